/// One CRI mount of a container, as the pod's shared directory serves it.
public struct VolumeRequest: Sendable, Codable, Equatable {
    /// How mounts made on the host under the volume after the bind reach the container.
    public enum Propagation: String, Sendable, Codable {
        /// Not at all (CRI PROPAGATION_PRIVATE).
        case `private`
        /// They appear in the container (CRI PROPAGATION_HOST_TO_CONTAINER, rslave).
        case hostToContainer
    }

    public var hostPath: String
    public var containerPath: String
    public var readOnly: Bool
    /// Every mount below the source read-only too (CRI recursive_read_only).
    public var recursiveReadOnly: Bool
    public var propagation: Propagation

    public init(
        hostPath: String, containerPath: String, readOnly: Bool, recursiveReadOnly: Bool = false,
        propagation: Propagation = .private
    ) {
        self.hostPath = hostPath
        self.containerPath = containerPath
        self.readOnly = readOnly
        self.recursiveReadOnly = recursiveReadOnly
        self.propagation = propagation
    }
}
