import AgentAPI
import BootContract
import Models

/// The guest agent of one pod VM, as the sandbox and container managers use it. `AgentClient` is
/// the real one (the agent channel); unit tests use a fake, so the managers' state machines are
/// tested without a VM. Every call has a deadline; a dead guest is an error, never a hang.
public protocol GuestAgent: Sendable {
    func health(timeout: Duration) async throws(AgentClientError) -> GuestHealth
    /// Asks the guest to power off; the VM ends shortly after the reply.
    func shutdown(timeout: Duration) async throws(AgentClientError)
    /// Tells the agent this host is leaving (a daemon restart): it keeps later events for the next session.
    func detach(timeout: Duration) async throws(AgentClientError)
    func close() async
    /// False once the channel is gone (the VM died, or the guest broke or refused the session): the
    /// next caller connects again.
    var isOpen: Bool { get }

    /// Applies the pod's sysctls, network interface and identity files in the guest, before its
    /// containers start.
    func configurePod(_ configuration: PodConfiguration, timeout: Duration) async throws(AgentClientError)
    /// Limits all of the pod's containers together.
    func updatePodResources(_ resources: ResourceLimits, timeout: Duration) async throws(AgentClientError)
    /// Unmounts an image disk in the guest before it is unplugged.
    func unmountDisk(_ serial: String, timeout: Duration) async throws(AgentClientError)

    func createContainer(_ spec: ContainerCreateSpec, timeout: Duration) async throws(AgentClientError)
    /// Starts the container's process; returns its pid in the guest.
    func startContainer(_ id: String, timeout: Duration) async throws(AgentClientError) -> Int32
    /// Starts another process in a running container; returns its pid in the guest.
    func exec(container: String, execID: String, process: ProcessSpec, stdio: ExecStdio, timeout: Duration)
        async throws(AgentClientError) -> Int32
    /// Signals the container's process, or one exec's (`exec` not empty).
    func signal(container: String, exec: String, signal: Int32, timeout: Duration) async throws(AgentClientError)
    func containerUsage(_ id: String, timeout: Duration) async throws(AgentClientError) -> ContainerUsage
    func updateResources(_ id: String, _ resources: ResourceLimits, timeout: Duration) async throws(AgentClientError)
    func removeContainer(_ id: String, timeout: Duration) async throws(AgentClientError)

    // Streams (agent API v4). A write is sent at once and answered once the guest has written the
    // bytes; writes of one stream stay in order on the channel, so a stream may keep several in
    // flight (`StreamWriter` bounds how many bytes).

    /// Sends bytes for a process's stdin (`exec` empty: the container's own); `close` closes it after.
    func sendStdin(container: String, exec: String, _ data: [UInt8], close: Bool, timeout: Duration) -> AgentReply
    func resize(container: String, exec: String, width: UInt32, height: UInt32, timeout: Duration)
        async throws(AgentClientError)
    /// Tells the agent `bytes` more output of a windowed exec was delivered (no reply).
    func ackOutput(container: String, exec: String, bytes: Int)
    /// Connects to 127.0.0.1:port in the pod; `connection` is the host's id for it.
    func openPort(connection: UInt64, port: UInt16, window: Int, timeout: Duration) async throws(AgentClientError)
    /// Sends bytes for a forwarded connection; `close` half-closes it after.
    func sendPort(connection: UInt64, _ data: [UInt8], close: Bool, timeout: Duration) -> AgentReply
    /// Tells the agent `bytes` more of a connection's data was delivered (no reply).
    func ackPort(connection: UInt64, bytes: Int)
    func closePort(connection: UInt64, timeout: Duration) async throws(AgentClientError)
}

extension GuestAgent {
    /// Writes to a process's stdin and waits until the guest has.
    public func writeStdin(container: String, exec: String, _ data: [UInt8], close: Bool, timeout: Duration)
        async throws(AgentClientError)
    {
        try await sendStdin(container: container, exec: exec, data, close: close, timeout: timeout).get()
    }

    /// Writes to a forwarded connection and waits until the guest has.
    public func writePort(connection: UInt64, _ data: [UInt8], close: Bool, timeout: Duration)
        async throws(AgentClientError)
    {
        try await sendPort(connection: connection, data, close: close, timeout: timeout).get()
    }
}

/// The answer to an agent request already sent: awaited later, so that a stream can keep several
/// writes in flight while they stay in order on the channel.
public struct AgentReply: Sendable {
    private let answer: @Sendable () async throws(AgentClientError) -> Void
    public init(_ answer: @escaping @Sendable () async throws(AgentClientError) -> Void) { self.answer = answer }
    /// Waits for the answer: the guest did it, or the error it gave.
    public func get() async throws(AgentClientError) { try await answer() }
}

/// How an exec's standard streams are set up in the guest.
public struct ExecStdio: Sendable, Equatable {
    public var stdin: Bool
    public var tty: Bool
    /// Output bytes the agent may send before the host acknowledges them; 0 for no flow control.
    public var outputWindow: Int
    /// With `tty`: the terminal's size (columns, rows) before the process runs; nil leaves it 0x0
    /// until the first resize.
    public var size: Size?
    public init(stdin: Bool = false, tty: Bool = false, outputWindow: Int = 0, size: Size? = nil) {
        self.stdin = stdin
        self.tty = tty
        self.outputWindow = outputWindow
        self.size = size
    }
    /// No stdin, no terminal, no flow control (ExecSync).
    public static let collected = ExecStdio()

    /// A terminal's size in character cells.
    public struct Size: Sendable, Equatable {
        public var width: UInt16
        public var height: UInt16
        public init(width: UInt16, height: UInt16) {
            self.width = width
            self.height = height
        }
    }
}

/// How a sandbox manager opens an agent: the real channel in the daemon, a fake in unit tests.
/// `token` is the VM's agent token (the session's proof that it is the VM's host). `onEvent`
/// receives the agent's process output and exits in the order they arrive; the channel stops
/// reading while more than `credit`'s limit of them are not yet released by the consumer.
public typealias GuestAgentConnector =
    @Sendable (
        _ endpoint: AgentEndpoint, _ token: [UInt8], _ timeout: Duration, _ credit: EventCredit,
        _ onEvent: (@Sendable (AgentEvent) -> Void)?
    ) async throws(AgentClientError) -> any GuestAgent

/// The agent API version this host speaks; a guest agent answering Health with another is refused.
public let hostAgentAPIVersion: UInt32 = agentAPIVersion
