import AgentClient
import Models
import Volumes

/// Everything Cocoon knows about one container, persisted as JSON. CRI-agnostic: the CRI layer
/// translates to and from `runtime.v1` messages.
///
/// Its life, and the only function that changes `state` (`transition`):
///
///     created --started--> running --exited--> exited
///        |                                       ^
///        +-----exited (start failed, quick exit)-+
///
/// `exited` is final. A running container whose pod stops exits with it (code 137). When a process
/// ends before StartContainer has answered, the exit comes first and `started` then only records
/// the pid and start time.
public struct ContainerRecord: Codable, Sendable, Equatable {
    public enum State: String, Codable, Sendable { case created, running, exited }

    /// What happens to a container.
    public enum Event: Sendable, Equatable {
        case started(pid: Int32, atNs: Int64)
        case exited(code: Int32, reason: String, message: String?, atNs: Int64)
    }

    public struct MountInfo: Codable, Sendable, Equatable {
        public var hostPath: String
        public var containerPath: String
        public var readOnly: Bool
        /// nil in records older than shared volumes: false, private.
        public var recursiveReadOnly: Bool?
        public var propagation: VolumeRequest.Propagation?
        public init(
            hostPath: String, containerPath: String, readOnly: Bool, recursiveReadOnly: Bool = false,
            propagation: VolumeRequest.Propagation = .private
        ) {
            self.hostPath = hostPath
            self.containerPath = containerPath
            self.readOnly = readOnly
            self.recursiveReadOnly = recursiveReadOnly
            self.propagation = propagation
        }

        /// The mount as the pod's shared directory serves it.
        public var volume: VolumeRequest {
            VolumeRequest(
                hostPath: hostPath, containerPath: containerPath, readOnly: readOnly,
                recursiveReadOnly: recursiveReadOnly ?? false, propagation: propagation ?? .private)
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
    /// The image's root filesystem it was made from (the block image; a native pod's overlay lower
    /// is the tree beside it). The image store keeps it while the container exists, also when the
    /// image itself is removed. Nil in records written before it was kept.
    public var rootfsImage: String?
    /// The pod's agent writes the CRI log (a native pod), not the daemon. Nil: the daemon does.
    public var agentWritesLog: Bool?
    public var labels: [String: String]
    public var annotations: [String: String]
    /// Absolute path of the CRI log file on the host ("" when the client gave none).
    public var logPath: String
    public var mounts: [MountInfo]
    public var stopSignal: Int32
    public private(set) var state: State
    public var createdAtNs: Int64
    public private(set) var startedAtNs: Int64?
    public private(set) var finishedAtNs: Int64?
    public private(set) var exitCode: Int32?
    public private(set) var reason: String?
    public private(set) var message: String?
    public private(set) var pid: Int32?
    /// The container's process: ExecSync runs with its env, user and capabilities.
    public var process: ProcessSpec?
    /// The CRI ContainerConfig as JSON (verbose status shows it).
    public var configJSON: String?
    /// stdin, stdin_once and tty of the CRI ContainerConfig (nil in records of older releases: none).
    public var stdio: StdioConfig?

    /// How a container's standard streams are set up (CRI `stdin`, `stdin_once`, `tty`).
    public struct StdioConfig: Sendable, Codable, Equatable {
        public var stdin: Bool
        public var stdinOnce: Bool
        public var tty: Bool
        public init(stdin: Bool = false, stdinOnce: Bool = false, tty: Bool = false) {
            self.stdin = stdin
            self.stdinOnce = stdinOnce
            self.tty = tty
        }
    }
    /// The process as records before the typed agent seam kept it (see `LegacyProcessJSON`).
    private var processJSON: String?

    public init(
        id: String, sandboxID: String, name: String, attempt: UInt32, image: String, imageID: String, imageRef: String?,
        imageDiskSerial: String, labels: [String: String], annotations: [String: String], logPath: String,
        mounts: [MountInfo],
        stopSignal: Int32, createdAtNs: Int64, process: ProcessSpec?, configJSON: String?
    ) {
        self.id = id
        self.sandboxID = sandboxID
        self.name = name
        self.attempt = attempt
        self.image = image
        self.imageID = imageID
        self.imageRef = imageRef
        self.imageDiskSerial = imageDiskSerial
        self.labels = labels
        self.annotations = annotations
        self.logPath = logPath
        self.mounts = mounts
        self.stopSignal = stopSignal
        self.state = .created
        self.createdAtNs = createdAtNs
        self.process = process
        self.configJSON = configJSON
    }

    /// Applies `event` and returns true, or returns false and changes nothing when the event does not
    /// apply in this state (a second exit, a start of a running container).
    @discardableResult
    public mutating func transition(_ event: Event) -> Bool {
        switch (state, event) {
        case (.created, .started(let pid, let at)):
            state = .running
            self.pid = pid
            startedAtNs = at
        case (.exited, .started(let pid, let at)):
            // The process ran before StartContainer answered: it started no later than it ended.
            self.pid = pid
            startedAtNs = startedAtNs ?? min(at, finishedAtNs ?? at)
        case (.created, .exited(let code, let reason, let message, let at)),
            (.running, .exited(let code, let reason, let message, let at)):
            state = .exited
            exitCode = code
            self.reason = reason
            self.message = message
            finishedAtNs = at
        default:
            return false
        }
        return true
    }

    /// Moves a process kept in the old form (`processJSON`) to `process`; true when the record changed.
    mutating func adoptLegacyProcess() -> Bool {
        guard let text = processJSON else { return false }
        if process == nil { process = LegacyProcessJSON.process(from: text) }
        processJSON = nil
        return true
    }
}
