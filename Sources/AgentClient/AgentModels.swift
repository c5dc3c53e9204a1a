import Foundation
import Models

// The host's view of what goes through the agent: plain Swift values the managers keep and persist.
// Only `WireConversion.swift` turns them into (and out of) the agent API's protobuf messages.

/// cgroup v2 limits of a container or of the whole pod; zero means no limit.
public struct ResourceLimits: Sendable, Codable, Equatable {
    public var memoryLimitBytes: Int64
    public var cpuQuotaMicros: Int64
    public var cpuPeriodMicros: Int64
    public var cpuShares: Int64
    public var pidsLimit: Int64

    public init(
        memoryLimitBytes: Int64 = 0, cpuQuotaMicros: Int64 = 0, cpuPeriodMicros: Int64 = 0, cpuShares: Int64 = 0,
        pidsLimit: Int64 = 0
    ) {
        self.memoryLimitBytes = memoryLimitBytes
        self.cpuQuotaMicros = cpuQuotaMicros
        self.cpuPeriodMicros = cpuPeriodMicros
        self.cpuShares = cpuShares
        self.pidsLimit = pidsLimit
    }
}

/// A host tree copied into the VM at `destination` (no shared filesystem).
public struct FileMount: Sendable, Equatable {
    /// One file, directory or symlink; `path` is relative to the mount ("" is its root).
    public struct Entry: Sendable, Equatable {
        public var path: String
        /// st_mode: type and permission bits.
        public var mode: UInt32
        /// File contents, or the target of a symlink.
        public var data: Data
        public init(path: String, mode: UInt32, data: Data = Data()) {
            self.path = path
            self.mode = mode
            self.data = data
        }
    }
    public var destination: String
    public var readOnly: Bool
    public var entries: [Entry]
    public init(destination: String, readOnly: Bool, entries: [Entry] = []) {
        self.destination = destination
        self.readOnly = readOnly
        self.entries = entries
    }
}

/// A volume the host bound into the pod's shared directory: the guest binds `<share>/<name>` at
/// `destination` in the container.
public struct SharedMount: Sendable, Codable, Equatable {
    public var name: String
    public var destination: String
    /// The whole tree is read-only (the host enforces what is read-only either way).
    public var readOnly: Bool
    public init(name: String, destination: String, readOnly: Bool) {
        self.name = name
        self.destination = destination
        self.readOnly = readOnly
    }
}

/// The PID namespace a container is born in (CRI's `namespace_options.pid` of the container).
public enum PIDNamespaceMode: Sendable, Equatable, Codable {
    /// A new one: the container's process is its PID 1.
    case own
    /// The pod's: shared by its POD-mode containers, PID 1 a pause (the node's in a hostPID pod).
    case pod
    /// The node's (native pods).
    case node
    /// That of another container of the pod (an ephemeral debug container's target).
    case target(String)
}

/// Everything the agent needs to prepare a container.
public struct ContainerCreateSpec: Sendable, Equatable {
    public var id: String
    /// The SCSI serial of the image's EROFS disk, already attached to the VM.
    public var imageDiskSerial: String
    /// The container's process (ContainerCore's description, as the guest runs it).
    public var process: ProcessSpec
    public var hostname: String
    public var readOnlyRootfs: Bool
    /// Paths to mask and to make read-only, replacing the runtime's defaults; nil keeps them.
    public var paths: PathOverrides?
    public var mounts: [FileMount]
    /// Volumes in the pod's shared directory (a pod with a shared filesystem).
    public var sharedMounts: [SharedMount] = []
    public var resources: ResourceLimits
    /// The process reads a stdin the host writes (attach); else /dev/null.
    public var stdin = false
    /// The process's stdio is a terminal.
    public var tty = false
    /// Every device may be opened (a privileged container); else runc's default allow-list.
    public var allDevices = false
    /// The PID namespace its processes live in.
    public var pidNamespace = PIDNamespaceMode.own
    /// Where a native pod's agent writes the container's CRI log itself; "" where the host writes it.
    public var logPath = ""

    public struct PathOverrides: Sendable, Codable, Equatable {
        public var masked: [String]
        public var readonly: [String]
        public init(masked: [String], readonly: [String]) {
            self.masked = masked
            self.readonly = readonly
        }
    }

    public init(
        id: String, imageDiskSerial: String, process: ProcessSpec, hostname: String = "", readOnlyRootfs: Bool = false,
        paths: PathOverrides? = nil, mounts: [FileMount] = [], resources: ResourceLimits = ResourceLimits()
    ) {
        self.id = id
        self.imageDiskSerial = imageDiskSerial
        self.process = process
        self.hostname = hostname
        self.readOnlyRootfs = readOnlyRootfs
        self.paths = paths
        self.mounts = mounts
        self.resources = resources
    }
}

/// A container's usage, from its cgroup in the guest.
public struct ContainerUsage: Sendable, Equatable {
    public var cpuUsageNs: UInt64
    public var memoryBytes: UInt64
    public var memoryWorkingSetBytes: UInt64
    public var pids: UInt64
    public init(cpuUsageNs: UInt64 = 0, memoryBytes: UInt64 = 0, memoryWorkingSetBytes: UInt64 = 0, pids: UInt64 = 0) {
        self.cpuUsageNs = cpuUsageNs
        self.memoryBytes = memoryBytes
        self.memoryWorkingSetBytes = memoryWorkingSetBytes
        self.pids = pids
    }
}

/// What the agent says about itself when asked (the sandbox keeps it as `GuestInfo`).
public struct GuestHealth: Sendable, Equatable {
    public var apiVersion: UInt32
    public var agentVersion: String
    public var kernelRelease: String
    public var transport: String
    public var agentStartedNs: UInt64
    public var channelOpenNs: UInt64
    public var memTotalKiB: UInt64
    public init(
        apiVersion: UInt32, agentVersion: String, kernelRelease: String = "", transport: String = "",
        agentStartedNs: UInt64 = 0,
        channelOpenNs: UInt64 = 0, memTotalKiB: UInt64 = 0
    ) {
        self.apiVersion = apiVersion
        self.agentVersion = agentVersion
        self.kernelRelease = kernelRelease
        self.transport = transport
        self.agentStartedNs = agentStartedNs
        self.channelOpenNs = channelOpenNs
        self.memTotalKiB = memTotalKiB
    }
}

/// Output and exits of the processes in a VM, as its agent reports them (untrusted: the ids are
/// checked against the pod they came from before anything is done with them).
public enum AgentEvent: Sendable, Equatable {
    public enum Stream: Sendable, Equatable { case stdout, stderr }
    /// `execID` is empty for the container's own process.
    case output(containerID: String, execID: String, stream: Stream, data: [UInt8])
    /// `exitedAtNs`: when the agent saw it end, by its clock (0: not said); see `exitTime`.
    case exit(containerID: String, execID: String, exitCode: Int32, oomKilled: Bool, exitedAtNs: Int64 = 0)
    /// Bytes from the pod's side of a forwarded connection.
    case portData(connection: UInt64, data: [UInt8])
    /// The pod's side ended (error empty: EOF); nothing more comes on the connection.
    case portClosed(connection: UInt64, error: String)
    /// The channel to the agent closed (the VM stopped or died); no more events come on it.
    case disconnected(reason: String)
}

/// What the guest sets up for the whole pod before it is READY: sysctls, its network interface,
/// and the identity files its containers see.
public struct PodConfiguration: Sendable, Equatable {
    /// The guest NIC (found by MAC) and what it gets.
    public struct Interface: Sendable, Equatable {
        public var mac: String
        public var mtu: Int
        /// CIDRs.
        public var addresses: [String]
        /// (destination CIDR, gateway or nil for a link route)
        public var routes: [(destination: String, gateway: String?)]

        public init(mac: String, mtu: Int, addresses: [String], routes: [(destination: String, gateway: String?)]) {
            self.mac = mac
            self.mtu = mtu
            self.addresses = addresses
            self.routes = routes
        }

        public static func == (a: Interface, b: Interface) -> Bool {
            a.mac == b.mac && a.mtu == b.mtu && a.addresses == b.addresses
                && a.routes.map(\.destination) == b.routes.map(\.destination)
                && a.routes.map(\.gateway) == b.routes.map(\.gateway)
        }
    }

    public var sysctls: [String: String]
    public var interface: Interface?
    /// Contents of /etc/hostname, /etc/hosts and /etc/resolv.conf for the pod's containers ("": none).
    public var hostname: String
    public var hosts: String
    public var resolvConf: String
    /// The virtio-fs tag of the pod's shared directory ("": the pod has none).
    public var sharedFSTag = ""
    /// Set for a VM restored from a template: what makes it its own before anything else runs.
    public var restored: RestoredIdentity?

    public init(
        sysctls: [String: String] = [:], interface: Interface? = nil, hostname: String = "", hosts: String = "",
        resolvConf: String = ""
    ) {
        self.sysctls = sysctls
        self.interface = interface
        self.hostname = hostname
        self.hosts = hosts
        self.resolvConf = resolvConf
    }
}

/// What a VM restored from a template gets so that it shares nothing with its template's other
/// clones: fresh entropy (the guest reseeds its random generator), the host's clock, and the NIC
/// address it had in the template (the agent gives that NIC the pod's).
public struct RestoredIdentity: Sendable, Equatable {
    public var entropy: [UInt8]
    public var realtimeNs: Int64
    public var templateMAC: String

    public init(entropy: [UInt8], realtimeNs: Int64, templateMAC: String) {
        self.entropy = entropy
        self.realtimeNs = realtimeNs
        self.templateMAC = templateMAC
    }

    /// 64 fresh bytes from the host's generator and the host's clock now.
    public static func fresh(templateMAC: String) -> RestoredIdentity {
        var generator = SystemRandomNumberGenerator()
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return RestoredIdentity(
            entropy: (0..<64).map { _ in UInt8.random(in: .min ... .max, using: &generator) },
            realtimeNs: Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec), templateMAC: templateMAC)
    }
}
