/// Everything Cocoon knows about one container, persisted as JSON. CRI-agnostic: the CRI layer
/// translates to and from `runtime.v1` messages.
public struct ContainerRecord: Codable, Sendable, Equatable {
    public enum State: String, Codable, Sendable { case created, running, exited, unknown }

    public struct MountInfo: Codable, Sendable, Equatable {
        public var hostPath: String
        public var containerPath: String
        public var readOnly: Bool
        public init(hostPath: String, containerPath: String, readOnly: Bool) {
            self.hostPath = hostPath
            self.containerPath = containerPath
            self.readOnly = readOnly
        }
    }

    public var id: String
    public var sandboxID: String
    public var name: String
    public var attempt: UInt32
    /// The image as the client named it, and the image id it resolved to.
    public var image: String
    public var imageID: String
    /// The image's repo digest (`name@sha256:…`) when it has one, as containerd reports image_ref.
    public var imageRef: String?
    public var imageDiskSerial: String
    public var labels: [String: String]
    public var annotations: [String: String]
    /// Absolute path of the CRI log file on the host ("" when the client gave none).
    public var logPath: String
    public var mounts: [MountInfo]
    public var stopSignal: Int32
    public var state: State
    public var createdAtNs: Int64
    public var startedAtNs: Int64?
    public var finishedAtNs: Int64?
    public var exitCode: Int32?
    public var reason: String?
    public var message: String?
    public var pid: Int32?
    /// The container's process (agent API JSON): ExecSync runs with its env, user and capabilities.
    public var processJSON: String?
    /// The CRI ContainerConfig as JSON (verbose status shows it).
    public var configJSON: String?
}
