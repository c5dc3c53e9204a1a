import Glibc
import SystemFiles

/// One cgroup on a host still on cgroup v1 (each controller a hierarchy of its own, as on hybrid
/// hosts): the same relative path in the memory, cpu, cpuacct, pids and devices hierarchies that
/// the host mounts, with v1's files for the limits `Cgroup` sets in v2. A native pod's containers
/// use it there; a pod VM's guest is always on v2.
public struct CgroupV1: Sendable, Equatable {
    /// The path below each hierarchy's root, e.g. `/cocoon/cocoon-0123/<container>`.
    public let relative: String
    public let root: String
    static let controllers = ["memory", "cpu", "cpuacct", "pids", "devices"]

    /// True when `root` is a cgroup v2 mount (its `cgroup.controllers` exists).
    public static func unified(_ root: String) -> Bool { access(root + "/cgroup.controllers", F_OK) == 0 }

    /// The hierarchies this host mounts, each with the cgroup's directory in it.
    var directories: [(controller: String, dir: String)] {
        Self.controllers.filter { access("\(root)/\($0)/cgroup.procs", F_OK) == 0 }
            .map { ($0, "\(root)/\($0)\(relative)") }
    }

    func dir(_ controller: String) -> String? { directories.first { $0.controller == controller }?.dir }

    func create() throws(ContainerCoreError) {
        for (controller, _) in directories {
            var current = "\(root)/\(controller)"
            for component in relative.split(separator: "/") {
                current += "/" + component
                if mkdir(current, 0o755) != 0 && errno != EEXIST { throw .errno("create cgroup \(current)") }
            }
        }
    }

    func apply(_ r: Resources) throws(ContainerCoreError) {
        if let memory = r.memoryLimitBytes, memory > 0, let dir = dir("memory") {
            try Self.set(dir, "memory.limit_in_bytes", "\(memory)")
        }
        if let pids = r.pidsLimit, pids > 0, let dir = dir("pids") { try Self.set(dir, "pids.max", "\(pids)") }
        if let dir = dir("cpu") {
            if let quota = r.cpuQuotaMicros, quota > 0 {
                let period = r.cpuPeriodMicros.flatMap { $0 > 0 ? $0 : nil } ?? 100_000
                try Self.set(dir, "cpu.cfs_period_us", "\(period)")
                try Self.set(dir, "cpu.cfs_quota_us", "\(quota)")
            }
            if let shares = r.cpuShares, shares > 0 {
                try Self.set(dir, "cpu.shares", "\(min(max(shares, 2), 262_144))")
            }
        }
    }

    func add(pid: Int32) throws(ContainerCoreError) {
        for (_, dir) in directories { try Self.set(dir, "cgroup.procs", "\(pid)") }
    }

    /// The device allow-list of `Cgroup.restrictDevices`, as v1's devices controller writes it.
    func restrictDevices() throws(ContainerCoreError) {
        guard let dir = dir("devices") else { throw .system("the host has no devices cgroup hierarchy") }
        try Self.set(dir, "devices.deny", "a")
        let allowed = [
            "c *:* m", "b *:* m", "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm", "c 5:0 rwm",
            "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm", "c 10:200 rwm",
        ]
        for rule in allowed { try Self.set(dir, "devices.allow", rule) }
    }

    func stats() -> Cgroup.Stats {
        var s = Cgroup.Stats()
        s.cpuUsageNanos = dir("cpuacct").flatMap { Cgroup.number(atPath: $0 + "/cpuacct.usage") } ?? 0
        if let memory = dir("memory") {
            s.memoryBytes = Cgroup.number(atPath: memory + "/memory.usage_in_bytes") ?? 0
            let inactive = Cgroup.keyed(atPath: memory + "/memory.stat")["total_inactive_file"] ?? 0
            s.memoryWorkingSetBytes = s.memoryBytes > inactive ? s.memoryBytes - inactive : 0
            s.oomKills = Cgroup.keyed(atPath: memory + "/memory.oom_control")["oom_kill"] ?? 0
        }
        s.pids = dir("pids").flatMap { Cgroup.number(atPath: $0 + "/pids.current") } ?? 0
        return s
    }

    /// SIGKILL to every member, as v1 has no cgroup.kill (a process forking meanwhile is caught by
    /// the caller's next round).
    func killAll() {
        guard let dir = dir("pids") ?? directories.first?.dir else { return }
        for pid in (FileText.read(dir + "/cgroup.procs") ?? "").split(separator: "\n").compactMap({ Int32($0) }) {
            kill(pid, SIGKILL)
        }
    }

    func remove() throws(ContainerCoreError) {
        for (_, dir) in directories where rmdir(dir) != 0 && errno != ENOENT { throw .errno("remove cgroup \(dir)") }
    }

    private static func set(_ dir: String, _ file: String, _ value: String) throws(ContainerCoreError) {
        let code = FileText.write(value, to: dir + "/" + file)
        if code != 0 { throw .errno("write \(value) to \(dir)/\(file)", code) }
    }
}
