import Models

/// Everything ContainerCore needs to start a container's first process: a prepared root filesystem,
/// the process, its identity and privileges, extra mounts and the cgroup. Built by the guest agent
/// from the agent API (or by a test), independent of CRI and protobuf.
public struct ContainerSpec: Sendable, Equatable {
    public var id: String
    /// An absolute directory holding the container's root filesystem (e.g. an overlay mount).
    public var rootfs: String
    public var process: ProcessSpec
    public var hostname: String?
    public var mounts: [Mount] = []
    public var readOnlyRootfs = false
    public var maskedPaths: [String] = DefaultPaths.masked
    public var readonlyPaths: [String] = DefaultPaths.readonly
    /// False: the container shares its creator's IPC namespace (in a pod VM, the pod's: SysV IPC,
    /// POSIX message queues and their sysctls are common to the pod's containers, as in Kubernetes).
    public var newIPCNamespace = true
    /// False: the container's processes live in a PID namespace it shares (the node's, the pod's or
    /// another container's): no PID 1 of its own, so the rest of its cgroup is killed when its
    /// process ends.
    public var newPIDNamespace = true
    /// With `newPIDNamespace` false: a process whose PID namespace the container is born in (the
    /// pod's pause, or another container's first process); nil: its creator's (the node's).
    public var pidNamespaceOf: Int32?
    /// Absolute cgroup v2 directory for the container (created, limited and removed by `Cgroup`), or nil.
    public var cgroupPath: String?
    /// Every device may be opened (a privileged container). Otherwise the cgroup gets runc's default
    /// device allow-list (`Cgroup.restrictDevices`): devices can be made, not opened.
    public var allDevices = false
    public var resources = Resources()

    public init(id: String, rootfs: String, process: ProcessSpec) {
        self.id = id
        self.rootfs = rootfs
        self.process = process
    }
}

/// A mount inside the container: a bind of `source` (a file or directory) or a filesystem of `type`.
public struct Mount: Sendable, Equatable {
    public var source: String
    public var destination: String
    /// nil for a bind mount.
    public var type: String?
    public var data: String?
    public var readOnly: Bool
    /// Extra mount flags (e.g. MS_NODEV for a volume of an unprivileged container).
    public var flags: UInt

    public init(
        source: String, destination: String, type: String? = nil, data: String? = nil, readOnly: Bool = false,
        flags: UInt = 0
    ) {
        self.source = source
        self.destination = destination
        self.type = type
        self.data = data
        self.readOnly = readOnly
        self.flags = flags
    }
}

/// cgroup v2 limits; nil means unlimited.
public struct Resources: Sendable, Equatable {
    public var memoryLimitBytes: Int64?
    public var pidsLimit: Int64?
    /// CFS quota and period in microseconds.
    public var cpuQuotaMicros: Int64?
    public var cpuPeriodMicros: Int64?
    /// CRI cpu_shares (2...262144), converted to cpu.weight.
    public var cpuShares: Int64?

    public init(
        memoryLimitBytes: Int64? = nil, pidsLimit: Int64? = nil, cpuQuotaMicros: Int64? = nil,
        cpuPeriodMicros: Int64? = nil, cpuShares: Int64? = nil
    ) {
        self.memoryLimitBytes = memoryLimitBytes
        self.pidsLimit = pidsLimit
        self.cpuQuotaMicros = cpuQuotaMicros
        self.cpuPeriodMicros = cpuPeriodMicros
        self.cpuShares = cpuShares
    }
}

/// The paths runc and containerd mask and make read-only by default.
public enum DefaultPaths {
    public static let masked = [
        "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
        "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
    ]
    public static let readonly = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
}
