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
