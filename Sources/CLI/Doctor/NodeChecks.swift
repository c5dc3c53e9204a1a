import AgentAPI
import Config
import Foundation
import PodNetwork

/// What Cocoon itself needs on the node: the CNI config and the plugins it names, the guest image
/// of each VM handler (and that its agent speaks this daemon's protocol), free disk in the state
/// root, and a CRI socket only root (or the configured group) can use.
enum NodeChecks {
    /// The network config the daemon would load, and each plugin it names in the plugin directories.
    static func cni(_ config: CocoonConfig) -> DoctorCheck {
        var directory = CNIConfigDirectory(path: config.cni.confDir)
        let list: CNINetworkList
        do {
            list = try directory.current()
        } catch {
            return .fail(
                "cni", error.description,
                "write a .conflist in \(config.cni.confDir) (README: a bridge network), or run only hostNetwork pods")
        }
        let types = list.plugins.indices.map { list.pluginType($0) }
        let missing = types.filter { type in
            !config.cni.binDirs.contains { FileManager.default.isExecutableFile(atPath: $0 + "/" + type) }
        }
        guard missing.isEmpty else {
            return .fail(
                "cni",
                "\(list.source) names plugins not found in \(config.cni.binDirs.joined(separator: ":")): "
                    + missing.joined(separator: ", "),
                "apt-get install containernetworking-plugins, or add their directory to [cni] bin_dirs")
        }
        return .ok("cni", "\(list.source): network \(list.name) (\(types.joined(separator: ", ")))")
    }

    /// The protocol this build's daemon speaks with its agents (`cocoon.agent.v4`).
    static var agentProtocol: String {
        let name = Cocoon_Agent_V4_SharedMount.protoMessageName
        return name.split(separator: ".").dropLast().joined(separator: ".")
    }

    /// Each VM handler's kernel and initrd, and the guest image's manifest (written by
    /// `images/build-guest`) naming the agent protocol this daemon speaks.
    static func guestImage(_ config: CocoonConfig) -> DoctorCheck {
        let vms = config.handlers.filter { $0.value.backend.isVM }.sorted { $0.key < $1.key }
        if vms.isEmpty { return .ok("guest image", "not needed: no VM handler") }
        for (name, handler) in vms {
            for file in [handler.kernel, handler.initrd, handler.agentImage]
            where !FileManager.default.fileExists(atPath: file) {
                return .fail(
                    "guest image", "handler \(name): \(file) is missing", "run images/build-guest (as root)")
            }
        }
        let dirs = Set(vms.map { ($0.value.initrd as NSString).deletingLastPathComponent }).sorted()
        for dir in dirs {
            let manifest = (try? String(contentsOfFile: dir + "/manifest", encoding: .utf8)) ?? ""
            let fields = Dictionary(
                manifest.split(separator: "\n").compactMap { line -> (String, String)? in
                    let parts = line.split(separator: "=", maxSplits: 1).map(String.init)
                    return parts.count == 2 ? (parts[0], parts[1]) : nil
                }, uniquingKeysWith: { a, _ in a })
            guard let spoken = fields["agent_protocol"] else {
                return .warn(
                    "guest image",
                    "\(dir) has no agent protocol in its manifest (built by an older images/build-guest)",
                    "run images/build-guest again")
            }
            guard spoken == agentProtocol else {
                return .fail(
                    "guest image", "\(dir)'s agent speaks \(spoken), this daemon \(agentProtocol)",
                    "run images/build-guest from this release")
            }
        }
        let kernel = vms.first.map { ($0.value.kernel as NSString).lastPathComponent } ?? ""
        return .ok("guest image", "\(dirs.joined(separator: ", ")): \(kernel), agent \(agentProtocol)")
    }

    /// Free space where images, containers' layers and pods' state go.
    static func disk(_ config: CocoonConfig) -> DoctorCheck {
        var path = config.stateRoot
        while !FileManager.default.fileExists(atPath: path), path != "/" {
            path = (path as NSString).deletingLastPathComponent
        }
        var fs = statvfs()
        guard statvfs(path, &fs) == 0 else {
            return .fail("disk", "cannot read the file system of \(path)", "check \(config.stateRoot)")
        }
        let free = Int64(fs.f_bavail) * Int64(fs.f_frsize)
        let gib = Double(free) / Double(1 << 30)
        let finding = String(format: "%.1f GiB free for %@", gib, config.stateRoot)
        if gib < 1 { return .fail("disk", finding, "free space: images and container layers need several GiB") }
        if gib < 10 { return .warn("disk", finding, "10 GiB or more is comfortable for images and layers") }
        return .ok("disk", finding)
    }

    /// The CRI socket: root's, and no one else's but the configured group's.
    static func socket(_ path: String) -> DoctorCheck {
        var st = stat()
        guard lstat(path, &st) == 0 else {
            return .warn("socket", "\(path) does not exist: cocoond is not running", "start cocoond")
        }
        let mode = st.st_mode & 0o777
        let modeText = String(mode, radix: 8)
        guard st.st_mode & S_IFMT == S_IFSOCK else {
            return .fail("socket", "\(path) is not a socket", "stop whatever made it and restart cocoond")
        }
        guard st.st_uid == 0 else {
            return .fail("socket", "\(path) is owned by uid \(st.st_uid)", "only root's cocoond may own the socket")
        }
        guard mode & 0o007 == 0 else {
            return .fail(
                "socket", "\(path) is mode \(modeText): every local user may drive the runtime",
                "restart cocoond (it makes the socket 0600, or 0660 for socket_group)")
        }
        return .ok("socket", "\(path) is root's, mode \(modeText)")
    }
}
