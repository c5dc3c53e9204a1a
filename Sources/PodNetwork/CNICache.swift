import Foundation
import Persistence

/// What libcni caches after an ADD, so DEL and CHECK work later with the same configuration and
/// result even when the config directory has changed (kept under the state root, one file per
/// network, pod and interface, as libcni keeps `/var/lib/cni/results`).
public struct CNICacheEntry: Codable, Sendable, Equatable {
    public var kind = "cniCacheV1"
    public var containerId: String
    public var ifName: String
    public var networkName: String
    public var cniVersion: String
    /// The plugin list as ADD ran it.
    public var plugins: [JSONValue]
    public var source: String
    public var cniArgs: [[String]]
    public var capabilityArgs: [String: JSONValue]
    public var result: JSONValue?

    public var list: CNINetworkList {
        CNINetworkList(name: networkName, cniVersion: cniVersion, plugins: plugins, source: source)
    }
}

/// The DEL cache: `<dir>/<network>-<container id>-<ifname>`, written atomically, 0600.
public struct CNICache: Sendable {
    public let directory: String

    public init(directory: String) { self.directory = directory }

    func path(network: String, containerID: String, ifName: String) -> String {
        "\(directory)/\(network)-\(containerID)-\(ifName)"
    }

    public func save(_ entry: CNICacheEntry) throws(CNIError) {
        do {
            try FileManager.default.createDirectory(
                atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            try AtomicFile.write(
                encoder.encode(entry),
                to: path(network: entry.networkName, containerID: entry.containerId, ifName: entry.ifName))
        } catch {
            throw .wiring("cannot cache the CNI result of \(entry.containerId) in \(directory): \(error)")
        }
    }

    public func load(network: String, containerID: String, ifName: String) -> CNICacheEntry? {
        guard
            let data = FileManager.default.contents(
                atPath: path(network: network, containerID: containerID, ifName: ifName))
        else { return nil }
        return try? JSONDecoder().decode(CNICacheEntry.self, from: data)  // try?: an unreadable cache is no cache
    }

    /// The networks with a cached entry for this pod and interface (a crash can leave one that no
    /// record names).
    public func networks(containerID: String, ifName: String) -> [String] {
        let suffix = "-\(containerID)-\(ifName)"
        // try?: no cache directory: nothing cached
        let files = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return files.filter { $0.hasSuffix(suffix) && $0.count > suffix.count }.map {
            String($0.dropLast(suffix.count))
        }
    }

    public func remove(network: String, containerID: String, ifName: String) {
        unlink(path(network: network, containerID: containerID, ifName: ifName))
    }
}
