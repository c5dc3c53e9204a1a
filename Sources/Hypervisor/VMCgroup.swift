import Foundation
import Models

/// Owns the host cgroup of each VM process (QEMU, virtiofsd and their helpers), so the pod's
/// resources bound its VM: memory (guest RAM plus the VMM's own overhead), process count, CPU weight
/// and quota. It sits under the pod's CRI `cgroup_parent` (the kubelet's pod cgroup, so the VM counts
/// in the kubelet's accounting and eviction) or, without one, under `/cocoon`. cgroup v2 where
/// /sys/fs/cgroup is the unified hierarchy; otherwise the v1 `memory`, `cpu` and `pids` hierarchies.
/// A VM ends with everything in its cgroup (`cgroup.kill`, or SIGKILL to each member on v1).
public enum VMCgroup {
    public typealias Driver = CgroupDriver

    /// The hierarchy path of the pod cgroup that CRI's `cgroup_parent` names; nil for none; an error
    /// message (for `linux.cgroup_parent`) for one that is not a cgroup path or slice name.
    public static func resolveParent(_ parent: String, driver: Driver) -> Result<String?, ParentError> {
        guard !parent.isEmpty else { return .success(nil) }
        let isSlice = parent.hasSuffix(".slice") && !parent.contains("/")
        let systemd = driver == .systemd || (driver == .auto && isSlice)
        guard parent.utf8.count <= 4096, parent.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value != 0x7f })
        else { return .failure(ParentError("\"\(parent)\" is not a cgroup name (control characters, spaces)")) }
        if systemd {
            guard isSlice else {
                return .failure(ParentError("\"\(parent)\" is not a systemd slice name (the systemd driver)"))
            }
            let name = String(parent.dropLast(".slice".count))
            if name == "-" { return .success(nil) }  // the root slice
            let parts = name.split(separator: "-", omittingEmptySubsequences: false)
            guard !parts.contains(where: \.isEmpty), name != "." && name != ".." else {
                return .failure(ParentError("\"\(parent)\" is not a valid slice name"))
            }
            var path = ""
            for i in parts.indices { path += "/" + parts[...i].joined(separator: "-") + ".slice" }
            return .success(path)
        }
        guard parent.hasPrefix("/") else {
            return .failure(ParentError("\"\(parent)\" must be an absolute cgroup path (the cgroupfs driver)"))
        }
        let parts = parent.split(separator: "/")
        guard !parts.contains(where: { $0 == ".." || $0 == "." }) else {
            return .failure(ParentError("\"\(parent)\" must not contain \".\" or \"..\""))
        }
        return .success(parts.isEmpty ? nil : "/" + parts.joined(separator: "/"))
    }

    /// Why a `cgroup_parent` was refused.
    public struct ParentError: Error, Sendable, Equatable {
        public var message: String
        init(_ message: String) { self.message = message }
    }

    public struct Limits: Sendable, Equatable {
        public var memoryBytes: UInt64
        public var pids: Int
        public var vcpus: Int
        /// CPU time per `cpuPeriodMicros` (the vCPUs plus the VMM's own threads); 0: no quota.
        public var cpuQuotaMicros: Int
        public static let cpuPeriodMicros = 100_000
        public init(memoryBytes: UInt64, pids: Int, vcpus: Int, cpuQuotaMicros: Int = 0) {
            self.memoryBytes = memoryBytes
            self.pids = pids
            self.vcpus = vcpus
            self.cpuQuotaMicros = cpuQuotaMicros
        }
    }

    /// Where cgroup hierarchies are mounted.
    static let mountRoot = "/sys/fs/cgroup"
    static let v1Controllers = ["memory", "cpu", "pids"]

    /// cgroup v2 mounted at the root has `cgroup.controllers` there (a v1 or hybrid host does not).
    static var unified: Bool { access(mountRoot + "/cgroup.controllers", F_OK) == 0 }

    /// The files a process writes its pid to, to join the cgroup at `path` (relative, e.g. /cocoon/x).
    static func procsFiles(_ path: String) -> [String] {
        directories(path).map { $0 + "/cgroup.procs" }
    }

    /// Creates the cgroup with its limits; returns its `cgroup.procs` files.
    static func create(_ path: String, _ limits: Limits?) throws(HypervisorError) -> [String] {
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
                guard let limits else { return procsFiles(path) }
                try write(dir, "memory.max", "\(limits.memoryBytes)")
                try write(dir, "pids.max", "\(limits.pids)")
                try write(dir, "cpu.weight", "\(min(10000, 100 * limits.vcpus))")
                if limits.cpuQuotaMicros > 0 {
                    // try?: a parent whose own quota forbids this one keeps the parent's as the bound
                    try? write(dir, "cpu.max", "\(limits.cpuQuotaMicros) \(Limits.cpuPeriodMicros)")
                }
            } else {
                for controller in v1Controllers {
                    let dir = "\(mountRoot)/\(controller)\(path)"
                    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                    guard let limits else { continue }
                    switch controller {
                    case "memory": try write(dir, "memory.limit_in_bytes", "\(limits.memoryBytes)")
                    case "pids": try write(dir, "pids.max", "\(limits.pids)")
                    default:
                        try write(dir, "cpu.shares", "\(1024 * limits.vcpus)")
                        if limits.cpuQuotaMicros > 0 {
                            // try?: v1 refuses a quota above the parent's; the parent's then bounds it
                            try? write(dir, "cpu.cfs_period_us", "\(Limits.cpuPeriodMicros)")
                            try? write(dir, "cpu.cfs_quota_us", "\(limits.cpuQuotaMicros)")
                        }
                    }
                }
            }
        } catch let error as HypervisorError {
            throw error
        } catch {
            removeEmpty(path)
            throw .bootFailed("cannot create the VM's cgroup \(path): \(error)")
        }
        return procsFiles(path)
    }

    /// Where a VM's cgroup is, relative to each hierarchy's root: under the pod's cgroup (a path
    /// from `resolveParent`) or under `/cocoon`.
    public static func path(forVM name: String, parent: String? = nil) -> String {
        (parent ?? "/cocoon") + "/" + name
    }

    /// The processes in the cgroup (a VMM's children included), from the pids hierarchy on v1.
    static func members(_ path: String) -> [Int32] {
        pids(inDirectory: unified ? "\(mountRoot)\(path)" : "\(mountRoot)/pids\(path)")
    }

    /// The processes listed in one cgroup directory's `cgroup.procs`.
    static func pids(inDirectory dir: String) -> [Int32] {
        // try?: a cgroup that is gone has no processes
        guard let text = try? String(contentsOfFile: dir + "/cgroup.procs", encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { Int32($0) }
    }

    /// Ends everything in the VM's cgroup (a compromised QEMU's children included), then removes it.
    public static func end(_ path: String, clock: any Clock<Duration> = ContinuousClock()) async {
        await killAll(path, clock: clock)
        await remove(path, clock: clock)
    }

    /// How often a cgroup whose processes are still exiting is looked at again, and how many times.
    static let retry: Duration = .milliseconds(20)
    static let tries = 50

    /// Ends every process in the cgroup: `cgroup.kill` where the kernel has it, SIGKILL to each
    /// member otherwise (again until none is left: a process forking meanwhile is caught next round).
    public static func killAll(_ path: String, clock: any Clock<Duration> = ContinuousClock()) async {
        if unified,
            (try? "1".write(toFile: "\(mountRoot)\(path)/cgroup.kill", atomically: false, encoding: .utf8)) != nil
        {
            return
        }
        for _ in 0..<tries {
            let pids = members(path)
            if pids.isEmpty { return }
            for pid in pids { kill(pid, SIGKILL) }
            // try?: cancellation ends the wait early; the processes were signalled
            try? await clock.sleep(for: retry)
        }
    }

    /// Moves every process of the cgroup at `from` into the one at `to` (a pooled VM joining its
    /// pod's cgroup), then removes `from`.
    static func move(from: String, to: String) async throws(HypervisorError) {
        let targets = procsFiles(to)
        for pid in members(from) {
            for file in targets {
                do {
                    try "\(pid)".write(toFile: file, atomically: false, encoding: .utf8)
                } catch {
                    // A process that ended meanwhile has nothing to move.
                    if Glibc.kill(pid, 0) != 0 { break }
                    throw .bootFailed("cannot move process \(pid) into the cgroup \(to): \(error)")
                }
            }
        }
        await remove(from)
    }

    /// Moves a process (all its threads) into the cgroup whose `cgroup.procs` files `create` returned.
    static func join(pid: Int32, procs: [String]) throws(HypervisorError) {
        for file in procs {
            do {
                try "\(pid)".write(toFile: file, atomically: false, encoding: .utf8)
            } catch {
                throw .bootFailed("cannot move process \(pid) into \(file): \(error)")
            }
        }
    }

    /// Removes the (empty) cgroup; a VM process still exiting gets a moment (`tries` x `retry`,
    /// awaited on `clock`: no thread is held meanwhile).
    public static func remove(_ path: String, clock: any Clock<Duration> = ContinuousClock()) async {
        await removeDirectories(directories(path), clock: clock)
    }

    /// The cgroup's directory in each hierarchy it has (one on cgroup v2).
    static func directories(_ path: String) -> [String] {
        unified ? ["\(mountRoot)\(path)"] : v1Controllers.map { "\(mountRoot)/\($0)\(path)" }
    }

    /// Removes a cgroup that never had a process (one just made), without waiting.
    static func removeEmpty(_ path: String) {
        for dir in directories(path) { rmdir(dir) }
    }

    /// Each directory removed, retried while it is busy; true when all are gone.
    @discardableResult
    static func removeDirectories(_ dirs: [String], clock: any Clock<Duration>) async -> Bool {
        var gone = true
        for dir in dirs {
            var removed = false
            for attempt in 0..<tries {
                if rmdir(dir) == 0 || errno == ENOENT {
                    removed = true
                    break
                }
                // try?: cancellation ends the wait early; the directory stays for the next removal
                if attempt + 1 < tries { try? await clock.sleep(for: retry) }
            }
            gone = gone && removed
        }
        return gone
    }

    private static func write(_ dir: String, _ file: String, _ value: String) throws {
        do {
            try value.write(toFile: dir + "/" + file, atomically: false, encoding: .utf8)
        } catch {
            throw HypervisorError.bootFailed("cannot set \(file) of the VM's cgroup \(dir): \(error)")
        }
    }
}
