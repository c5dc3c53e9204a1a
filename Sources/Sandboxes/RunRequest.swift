import PodNetwork

/// A validated request to start a pod sandbox, already translated from CRI.
public struct RunRequest: Sendable {
    public var metadata: PodMetadata
    public var labels: [String: String]
    public var annotations: [String: String]
    /// As the client sent it; "" means the default handler.
    public var runtimeHandler: String
    /// VM size overrides (nil: the handler's defaults).
    public var vcpus: Int?
    /// Memory the pod asks for beyond the handler's default (from its limits), in MiB.
    public var extraMemoryMiB: Int
    public var memoryMiBOverride: Int?
    public var configJSON: String?
    /// Namespaced sysctls (already checked), applied in the guest before the pod is READY.
    public var sysctls: [String: String] = [:]
    /// The pod's host name (CRI `hostname`; the pod name when empty).
    public var hostname: String = ""
    /// `hostPort`s for the `portmap` plugin.
    public var portMappings: [PortMapping] = []
    /// CRI `dns_config`, when it has any setting.
    public var dns: PodDNS?
    /// From the `kubernetes.io/{ingress,egress}-bandwidth` annotations.
    public var bandwidth: Bandwidth?
    /// CRI `linux.cgroup_parent` as the kubelet wrote it (its cgroup driver's form); "" for none.
    public var cgroupParent: String = ""
    /// CRI `namespace_options.network == NODE`: the pod uses the node's network (native handlers only).
    public var hostNetwork = false
    /// CRI `namespace_options.pid` / `.ipc == NODE` (refused for now: see `SandboxManager.plan`).
    public var hostPID = false
    public var hostIPC = false

    public init(
        metadata: PodMetadata, labels: [String: String] = [:], annotations: [String: String] = [:],
        runtimeHandler: String = "", vcpus: Int? = nil, extraMemoryMiB: Int = 0, memoryMiBOverride: Int? = nil,
        configJSON: String? = nil
    ) {
        self.metadata = metadata
        self.labels = labels
        self.annotations = annotations
        self.runtimeHandler = runtimeHandler
        self.vcpus = vcpus
        self.extraMemoryMiB = extraMemoryMiB
        self.memoryMiBOverride = memoryMiBOverride
        self.configJSON = configJSON
    }
}
