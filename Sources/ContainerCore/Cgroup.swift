import CContainerCore
import Glibc
import SystemFiles

/// One cgroup v2 directory: created with the cpu, memory and pids controllers enabled above it,
/// limited from `Resources`, read for stats and OOM kills, and removed when its processes are gone.
/// On a cgroup v1 host (a native pod's containers) the same path is a `CgroupV1` in each hierarchy.
public struct Cgroup: Sendable, Equatable {
    public let path: String
    /// Set on a v1 host: every call goes to it.
    public let v1: CgroupV1?

    public init(path: String, v1: CgroupV1? = nil) {
        self.path = path
        self.v1 = v1
    }

    /// Creates the directory (and its parents), enabling the controllers on the way down from `root`.
    public static func create(_ path: String, root: String = "/sys/fs/cgroup", resources: Resources)
        throws(ContainerCoreError) -> Cgroup
    {
        guard path.hasPrefix(root + "/") else { throw .invalidSpec("cgroup path \(path) is not under \(root)") }
        if !CgroupV1.unified(root) {
            let v1 = CgroupV1(relative: String(path.dropFirst(root.count)), root: root)
            try v1.create()
            try v1.apply(resources)
            return Cgroup(path: path, v1: v1)
        }
        var current = root
        for component in path.dropFirst(root.count + 1).split(separator: "/") {
            // Best effort: a controller the kernel lacks simply stays off.
            for controller in ["+cpu", "+memory", "+pids"] {
                _ = FileText.write(controller, to: current + "/cgroup.subtree_control")
            }
            current += "/" + component
            if mkdir(current, 0o755) != 0 && errno != EEXIST { throw .errno("create cgroup \(current)") }
        }
        let cgroup = Cgroup(path: path)
        try cgroup.apply(resources)
        return cgroup
    }

    public func apply(_ r: Resources) throws(ContainerCoreError) {
        if let v1 { return try v1.apply(r) }
        if let memory = r.memoryLimitBytes, memory > 0 {
            try set("memory.max", "\(memory)")
            _ = FileText.write("0", to: path + "/memory.swap.max")
        }
        if let pids = r.pidsLimit, pids > 0 { try set("pids.max", "\(pids)") }
        if let quota = r.cpuQuotaMicros, quota > 0 {
            try set("cpu.max", "\(quota) \(r.cpuPeriodMicros.flatMap { $0 > 0 ? $0 : nil } ?? 100_000)")
        }
        if let shares = r.cpuShares, shares > 0 {
            let clamped = min(max(shares, 2), 262_144)
            try set("cpu.weight", "\(1 + ((clamped - 2) * 9999) / 262_142)")
        }
    }

    public func add(pid: Int32) throws(ContainerCoreError) {
        if let v1 { return try v1.add(pid: pid) }
        try set("cgroup.procs", "\(pid)")
    }

    /// runc's default device allow-list for everything in this cgroup (an eBPF device program): any
    /// device node may be made, but only null, zero, full, random, urandom, tty, ptmx, the pty
    /// slaves and /dev/net/tun may be opened; a serial port or a disk made with mknod cannot.
    public func restrictDevices() throws(ContainerCoreError) {
        if let v1 { return try v1.restrictDevices() }
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw .errno("open cgroup \(path)") }
        defer { close(fd) }
        let rc = ccore_attach_device_filter(fd)
        guard rc == 0 else { throw .system("attach the device filter to \(path): \(String(cString: strerror(-rc)))") }
    }

    /// Usage figures for CRI stats.
    public struct Stats: Sendable, Equatable {
        public var cpuUsageNanos: UInt64 = 0
        public var memoryBytes: UInt64 = 0
        public var memoryWorkingSetBytes: UInt64 = 0
        public var pids: UInt64 = 0
        public var oomKills: UInt64 = 0
    }

    public func stats() -> Stats {
        if let v1 { return v1.stats() }
        var s = Stats()
        s.cpuUsageNanos = (keyed("cpu.stat")["usage_usec"] ?? 0) * 1000
        s.memoryBytes = number("memory.current") ?? 0
        let inactive = keyed("memory.stat")["inactive_file"] ?? 0
        s.memoryWorkingSetBytes = s.memoryBytes > inactive ? s.memoryBytes - inactive : 0
        s.pids = number("pids.current") ?? 0
        s.oomKills = keyed("memory.events")["oom_kill"] ?? 0
        return s
    }

    /// Kills every process in the cgroup (cgroup.kill, Linux 5.14+).
    public func killAll() {
        if let v1 { return v1.killAll() }
        _ = FileText.write("1", to: path + "/cgroup.kill")
    }

    /// Removes the directory; fails while processes remain.
    public func remove() throws(ContainerCoreError) {
        if let v1 { return try v1.remove() }
        if rmdir(path) != 0 && errno != ENOENT { throw .errno("remove cgroup \(path)") }
    }

    private func set(_ file: String, _ value: String) throws(ContainerCoreError) {
        let code = FileText.write(value, to: path + "/" + file)
        if code != 0 { throw .errno("write \(value) to \(path)/\(file)", code) }
    }

    private func number(_ file: String) -> UInt64? { Self.number(atPath: path + "/" + file) }

    private func keyed(_ file: String) -> [String: UInt64] { Self.keyed(atPath: path + "/" + file) }

    /// The first line of a cgroup file as a number (v1 and v2 alike).
    static func number(atPath file: String) -> UInt64? {
        FileText.read(file).flatMap { UInt64($0.split(separator: "\n").first ?? "") }
    }

    /// A cgroup file of `key value` lines (v1 and v2 alike).
    static func keyed(atPath file: String) -> [String: UInt64] {
        var result: [String: UInt64] = [:]
        for line in (FileText.read(file) ?? "").split(separator: "\n") {
            let parts = line.split(separator: " ")
            if parts.count == 2, let v = UInt64(parts[1]) { result[String(parts[0])] = v }
        }
        return result
    }
}
