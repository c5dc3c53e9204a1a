import Foundation

/// Owns the host cgroup of each VM process, so the pod's resources bound its VM: memory (guest RAM
/// plus the VMM's own overhead), process count and CPU weight. cgroup v2 where /sys/fs/cgroup is
/// the unified hierarchy; otherwise the v1 `memory`, `cpu` and `pids` hierarchies.
public enum VMCgroup {
    public struct Limits: Sendable, Equatable {
        public var memoryBytes: UInt64
        public var pids: Int
        public var vcpus: Int
        public init(memoryBytes: UInt64, pids: Int, vcpus: Int) {
            self.memoryBytes = memoryBytes
            self.pids = pids
            self.vcpus = vcpus
        }
    }

    /// Where cgroup hierarchies are mounted.
    static let mountRoot = "/sys/fs/cgroup"
    static let v1Controllers = ["memory", "cpu", "pids"]

    /// cgroup v2 mounted at the root has `cgroup.controllers` there (a v1 or hybrid host does not).
    static var unified: Bool { access(mountRoot + "/cgroup.controllers", F_OK) == 0 }

    /// The files a process writes its pid to, to join the cgroup at `path` (relative, e.g. /cocoon/x).
    static func procsFiles(_ path: String) -> [String] {
        unified ? ["\(mountRoot)\(path)/cgroup.procs"] : v1Controllers.map { "\(mountRoot)/\($0)\(path)/cgroup.procs" }
    }

    /// Creates the cgroup with its limits; returns its `cgroup.procs` files.
    static func create(_ path: String, _ limits: Limits) throws(HypervisorError) -> [String] {
        do {
            if unified {
                // Each ancestor hands the controllers down.
                var dir = mountRoot
                for part in path.split(separator: "/") {
                    try? "+memory +pids +cpu".write(  // try?: a controller the host lacks is skipped
                        toFile: dir + "/cgroup.subtree_control", atomically: false, encoding: .utf8)
                    dir += "/" + part
                    if !FileManager.default.fileExists(atPath: dir) {
                        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: false)
                    }
                }
                try write(dir, "memory.max", "\(limits.memoryBytes)")
                try write(dir, "pids.max", "\(limits.pids)")
                try write(dir, "cpu.weight", "\(min(10000, 100 * limits.vcpus))")
            } else {
                for controller in v1Controllers {
                    let dir = "\(mountRoot)/\(controller)\(path)"
                    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                    switch controller {
                    case "memory": try write(dir, "memory.limit_in_bytes", "\(limits.memoryBytes)")
                    case "pids": try write(dir, "pids.max", "\(limits.pids)")
                    default: try write(dir, "cpu.shares", "\(1024 * limits.vcpus)")
                    }
                }
            }
        } catch let error as HypervisorError {
            throw error
        } catch {
            remove(path)
            throw .bootFailed("cannot create the VM's cgroup \(path): \(error)")
        }
        return procsFiles(path)
    }

    /// Where a VM's cgroup is, relative to each hierarchy's root.
    public static func path(forVM name: String) -> String { "/cocoon/" + name }

    /// Removes the (empty) cgroup; a VM process still exiting gets a moment.
    public static func remove(_ path: String) {
        let dirs = unified ? ["\(mountRoot)\(path)"] : v1Controllers.map { "\(mountRoot)/\($0)\(path)" }
        for dir in dirs {
            for _ in 0..<50 {
                if rmdir(dir) == 0 || errno == ENOENT { break }
                usleep(20_000)
            }
        }
    }

    private static func write(_ dir: String, _ file: String, _ value: String) throws {
        do {
            try value.write(toFile: dir + "/" + file, atomically: false, encoding: .utf8)
        } catch {
            throw HypervisorError.bootFailed("cannot set \(file) of the VM's cgroup \(dir): \(error)")
        }
    }
}
