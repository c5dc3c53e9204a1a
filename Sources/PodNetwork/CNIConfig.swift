import Foundation

/// One CNI network configuration list (a `.conflist`, or a single-plugin `.conf`), validated: the
/// plugins are called in this order on ADD and in reverse on DEL.
public struct CNINetworkList: Sendable, Equatable {
    public var name: String
    public var cniVersion: String
    /// Each plugin's configuration as written, with its `type` (the plugin binary's name).
    public var plugins: [JSONValue]
    /// The file it came from.
    public var source: String

    /// Result formats Cocoon reads (libcni's 0.3.x/0.4.0 "current" and 1.x).
    public static let supportedVersions: Set = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]

    public func pluginType(_ index: Int) -> String { plugins[index]["type"]?.string ?? "" }

    /// The capabilities (`portMappings`, `bandwidth`, `dns`, ...) plugin `index` asks for.
    public func capabilities(_ index: Int) -> Set<String> {
        Set((plugins[index]["capabilities"]?.object ?? [:]).filter { $0.value.bool == true }.keys)
    }

    /// Parses a configuration file's contents; the message names the file and what is wrong.
    public static func parse(_ data: Data, source: String) throws(CNIError) -> CNINetworkList {
        guard let root = JSONValue.parse(data)?.object else {
            throw .config("\(source) is not a JSON object")
        }
        let plugins: [JSONValue]
        if let list = root["plugins"] {
            guard case .array(let items) = list, !items.isEmpty else {
                throw .config("\(source): \"plugins\" must be a non-empty array")
            }
            plugins = items
        } else {
            plugins = [.object(root)]  // a .conf: the file is the one plugin
        }
        guard let name = root["name"]?.string, !name.isEmpty else {
            throw .config("\(source): \"name\" is required")
        }
        guard name.utf8.count <= 128, !name.contains("/"), name != ".", name != ".." else {
            throw .config("\(source): network name \"\(name)\" must be at most 128 bytes without '/'")
        }
        let version = root["cniVersion"]?.string ?? ""
        guard supportedVersions.contains(version) else {
            throw .config(
                "\(source): cniVersion \"\(version)\" is not supported "
                    + "(\(supportedVersions.sorted().joined(separator: ", ")))"
            )
        }
        for (index, plugin) in plugins.enumerated() {
            guard let type = plugin["type"]?.string, !type.isEmpty, !type.contains("/"), type != "..", type != "."
            else {
                throw .config("\(source): plugins[\(index)].type must name a plugin binary")
            }
        }
        return CNINetworkList(name: name, cniVersion: version, plugins: plugins, source: source)
    }
}

/// Finds the network configuration the way containerd and CRI-O do: the first file by name in the
/// directory ending in `.conflist`, `.conf` or `.json`. Reads again only when the directory or that
/// file changed.
public struct CNIConfigDirectory: Sendable {
    public let path: String
    private var cached: (stamp: String, list: CNINetworkList)?

    public init(path: String) { self.path = path }

    /// The configuration now in the directory; the error says why there is none.
    public mutating func current() throws(CNIError) -> CNINetworkList {
        let files: [String]
        do {
            files = try FileManager.default.contentsOfDirectory(atPath: path)
                .filter { $0.hasSuffix(".conflist") || $0.hasSuffix(".conf") || $0.hasSuffix(".json") }.sorted()
        } catch {
            cached = nil
            throw .noConfig("no CNI network config: cannot read \(path) (\(Self.reason(error)))")
        }
        guard let first = files.first else {
            cached = nil
            throw .noConfig("no CNI network config found in \(path)")
        }
        let file = path + "/" + first
        var info = stat()
        guard stat(file, &info) == 0, info.st_mode & S_IFMT == S_IFREG else {
            throw .noConfig("no CNI network config: \(file) is not a readable file")
        }
        guard info.st_size <= 1 << 20 else { throw .config("\(file) is larger than 1 MiB") }
        let stamp = "\(file) \(info.st_size) \(info.st_mtim.tv_sec).\(info.st_mtim.tv_nsec) \(info.st_ino)"
        if let cached, cached.stamp == stamp { return cached.list }
        guard let data = FileManager.default.contents(atPath: file) else {
            throw .noConfig("no CNI network config: cannot read \(file)")
        }
        let list = try CNINetworkList.parse(data, source: file)
        cached = (stamp, list)
        return list
    }

    private static func reason(_ error: Error) -> String {
        (error as NSError).localizedFailureReason ?? (error as NSError).localizedDescription
    }
}
