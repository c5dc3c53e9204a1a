import Models
import TOMLKit

/// Owns the daemon's configuration: where state, sockets and logs live, and the runtime handlers
/// (one per RuntimeClass) that say which hypervisor boots a pod and with which guest image and size.
public struct CocoonConfig: Sendable, Equatable {
    public static let defaultPath = "/etc/cocoon/config.toml"
    public static let defaultHandlerName = "cocoon"

    public var stateRoot: String = "/var/lib/cocoon"
    public var runDir: String = "/run/cocoon"
    public var socket: String = "/run/cocoon/cocoon.sock"
    /// The group that may use the CRI socket besides root (mode 0660, as containerd's `[grpc] gid`);
    /// empty: root only (0600). A group name or a numeric gid.
    public var socketGroup: String = ""
    /// Each pod VM's process runs as a host user and group of its own: `vm_uid_base` plus a slot
    /// (0..<`vmUIDCount`), persisted with the pod. Pick a range no other user or user namespace uses.
    public var vmUIDBase: UInt32 = 1_500_000_000
    public static let vmUIDCount: UInt32 = 65536
    public var logLevel: LogLevel = .info
    /// The handler used when a request names none (`runtime_handler: ""`).
    public var defaultHandler: String = CocoonConfig.defaultHandlerName
    public var handlers: [String: RuntimeHandler] = [:]
    /// How images are fetched: insecure registries, mirrors, download concurrency.
    public var registry = RegistrySettings()
    /// Settings every container gets.
    public var containers = ContainerSettings()
    /// The CRI streaming server (Exec, Attach, PortForward URLs).
    public var streaming = StreamingSettings()
    /// Pod networking through CNI plugins.
    public var cni = CNISettings()
    /// `[cgroups] driver`: how CRI's `cgroup_parent` is written (the kubelet's `cgroupDriver`).
    public var cgroupDriver: CgroupDriver = .auto

    public init() {
        handlers[Self.defaultHandlerName] = RuntimeHandler(backend: .qemu)
    }

    /// The handler a request names, resolving "" to the default one.
    public func handler(named name: String) -> (name: String, handler: RuntimeHandler)? {
        let resolved = name.isEmpty ? defaultHandler : name
        return handlers[resolved].map { (resolved, $0) }
    }
}

/// `[containers]`: what applies to every container (CRI-O's `pids_limit` habit).
public struct ContainerSettings: Sendable, Equatable {
    /// pids.max of each container's cgroup in the VM; 0 means unlimited.
    public var pidsLimit: Int64 = 0
    public init(pidsLimit: Int64 = 0) { self.pidsLimit = pidsLimit }
}

/// `[streaming]`: where the streaming server listens (containerd's `stream_server_address` and
/// `stream_server_port`), its timeouts and its TLS key pair.
public struct StreamingSettings: Sendable, Equatable {
    public var address = "127.0.0.1"
    /// 0: an ephemeral port, chosen at start.
    public var port = 0
    /// Seconds a client has to open its streams after connecting.
    public var streamCreationTimeoutSeconds = 30
    /// Seconds a session may move no byte before it is closed (the kubelet's 4 hours).
    public var streamIdleTimeoutSeconds = 4 * 3600
    /// Seconds a streaming URL stays valid before its client opens it (the kubelet's minute).
    public var urlTTLSeconds = 60
    /// PEM certificate (chain) and key: the server speaks HTTPS when both are set (containerd's
    /// `enable_tls_streaming` with `x509_key_pair_streaming`).
    public var tlsCertFile = ""
    public var tlsKeyFile = ""
    public init() {}
}

/// `[cni]`: where the network configuration and the plugins are (containerd's `conf_dir` and
/// `bin_dir`), and how long one plugin call may take.
public struct CNISettings: Sendable, Equatable {
    public var confDir = "/etc/cni/net.d"
    /// Searched in order; Debian's `containernetworking-plugins` installs into /usr/lib/cni.
    public var binDirs = ["/opt/cni/bin", "/usr/lib/cni"]
    public var pluginTimeoutSeconds = 30
    public init() {}
}

/// One runtime handler: a hypervisor backend plus the guest image and default VM size it boots.
/// How a handler's pods get their volumes (`shared_fs`).
public enum SharedFS: String, Sendable, Equatable, CaseIterable {
    case virtioFS = "virtio-fs"
    case none
}

/// How a handler's pod VMs start (`start`).
public enum StartMode: String, Sendable, Equatable, CaseIterable {
    /// Each pod boots its own kernel.
    case cold
    /// Each pod is a copy-on-write clone of a VM booted once per handler (or a clone restored ahead
    /// of time, from the handler's warm pool).
    case template
}

public struct RuntimeHandler: Sendable, Equatable {

    public var backend: Backend
    public var kernel: String
    public var initrd: String
    /// Read-only disk image holding the guest agent (default: `agent.img` beside the initrd).
    public var agentImage: String
    public var vcpus: Int
    public var memoryMiB: Int
    public var accel: Accel
    /// Extra guest kernel arguments appended after Cocoon's own.
    public var kernelArgs: String
    /// Which `io.cocoon.vm.*` annotations pods may use to size their VM (as Kata's
    /// `enable_annotations`): names after the prefix, from `RuntimeHandler.sizingAnnotations`. Others
    /// are ignored with a warning.
    public var enableAnnotations: [String] = RuntimeHandler.sizingAnnotations
    /// The largest VM a pod may ask for, by annotation or by its resources.
    public var maxVcpus: Int = 8
    public var maxMemoryMiB: Int = 16384
    /// How pods' volumes reach their VM: a shared directory (virtio-fs), or copies made at
    /// CreateContainer (`none`: never updated, at most 12 MiB per container; for VMs whose RAM
    /// cannot be shared with virtiofsd, such as copy-on-write clones of a template).
    public var sharedFS: SharedFS = .virtioFS
    /// How pods' guests cache their shared directory (volumes).
    public var sharedFSCache: SharedFSCache = .auto
    /// Cold boots, or clones of the handler's template (which need `shared_fs = "none"`: a clone's
    /// RAM is private to it, and virtiofsd must map guest RAM shared).
    public var start: StartMode = .cold
    /// How many clones of the template wait restored for a pod (template handlers only).
    public var poolSize = 1
    public static let poolSizeRange = 0...16
    /// The admin vouches for this handler's guests: a backend that cannot give the pod VM the whole
    /// jail (libvirt: `libvirtMissingJail`) runs its pods anyway.
    public var trustedGuests = false

    /// What a libvirt domain's QEMU lacks of the qemu backend's jail (libvirt gives the rest: its own
    /// user, seccomp, a private /dev, the pod's cgroup and limits, an empty environment).
    public static let libvirtMissingJail = [
        "libvirt starts QEMU in the host's network namespace (the qemu backend: the pod's)",
        "libvirt starts QEMU in the host's PID namespace (the qemu backend: one of its own)",
    ]

    /// The annotations a handler can enable.
    public static let sizingAnnotations = ["vcpus", "memory_mib"]

    public init(
        backend: Backend, kernel: String = "/var/lib/cocoon/guest/vmlinux",
        initrd: String = "/var/lib/cocoon/guest/initrd.cpio", agentImage: String? = nil, vcpus: Int = 1,
        memoryMiB: Int = 256, accel: Accel = .auto, kernelArgs: String = ""
    ) {
        self.backend = backend
        self.kernel = kernel
        self.initrd = initrd
        self.agentImage = agentImage ?? Self.agentImage(besideInitrd: initrd)
        self.vcpus = vcpus
        self.memoryMiB = memoryMiB
        self.accel = accel
        self.kernelArgs = kernelArgs
    }

    /// The agent image the image builder writes next to an initrd.
    public static func agentImage(besideInitrd initrd: String) -> String {
        guard let slash = initrd.lastIndex(of: "/") else { return "agent.img" }
        return initrd[..<slash] + "/agent.img"
    }

    /// Limits for a VM's size, from a handler or a pod's resources.
    public static let vcpuRange = 1...64
    public static let memoryRangeMiB = 64...(256 * 1024)
}

/// Registry access settings (`[registry]`): which hosts may be reached over plain HTTP (loopback
/// always may), mirrors tried before a registry itself, and how many layers download at once.
public struct RegistrySettings: Sendable, Equatable {
    /// Registry hosts (`host[:port]`) reached over plain HTTP.
    public var insecure: [String] = []
    /// Registry host → endpoint URLs (`https://mirror.example`), tried in order before the registry.
    public var mirrors: [String: [String]] = [:]
    public var maxConcurrentDownloads: Int = 3
    public static let concurrencyRange = 1...16
    public init() {}
}

public enum LogLevel: String, Sendable, CaseIterable { case trace, debug, info, notice, warning, error, critical }

/// A configuration problem, naming the key and the file.
public struct ConfigError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
