import BootContract
import CAgentSys
import Glibc

/// Loads the kernel modules listed by the image builder in /etc/cocoon/modules.<set>
/// (paths already in dependency order), for the virtio bus in use and the transport.
enum ModuleLoader {
    static func loadAll(transport: BootContract.Transport, bus: BootContract.Bus) -> [String] {
        var sets = ["modules.\(bus.rawValue)"]
        if transport == .vsock { sets.append("modules.vsock") }
        var loaded: [String] = []
        var seen = Set<String>()
        for set in sets {
            guard let list = readSmallFile("/etc/cocoon/\(set)") else { continue }
            for line in list.split(separator: "\n") where !line.isEmpty {
                let path = String(line)
                guard seen.insert(path).inserted else { continue }
                if load(path) { loaded.append(baseName(path)) }
            }
        }
        return loaded
    }

    /// Loads one extra set (e.g. "disks" on the first container); already loaded modules are skipped.
    static func loadSet(_ name: String) {
        guard let list = readSmallFile("/etc/cocoon/modules.\(name)") else { return }
        for line in list.split(separator: "\n") where !line.isEmpty { _ = load(String(line)) }
    }

    private static func load(_ path: String) -> Bool {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            log("module \(path): \(SystemError("open"))")
            return false
        }
        defer { close(fd) }
        if cocoon_finit_module(fd) != 0 && errno != EEXIST {
            log("module \(path): \(SystemError("finit_module"))")
            return false
        }
        return true
    }

    private static func baseName(_ path: String) -> String {
        let file = path.split(separator: "/").last.map(String.init) ?? path
        return file.hasSuffix(".ko") ? String(file.dropLast(3)) : file
    }
}
