import Errors
import Models

/// What the streaming server needs of the runtime, in its own terms (containerd's
/// `streaming.Runtime`): it starts execs, attaches to containers and dials pods' ports, and talks to
/// what it gets through `StreamedProcess` and `StreamedPort`. The daemon's composition root conforms
/// the container manager to it; the streaming server knows nothing of containers or pods.
public protocol StreamingRuntime: Sendable {
    /// Starts `request.command` in the running container; its output comes as the process's events.
    func openExec(_ request: ExecRequest) async throws(CocoonError) -> any StreamedProcess
    /// Attaches to the container's own process (its stdin too when `stdin`).
    func attach(_ containerID: String, stdin: Bool) async throws(CocoonError) -> any StreamedProcess
    /// Opens a connection to `port` inside the pod's network namespace.
    func dial(pod: String, port: UInt16) async throws(CocoonError) -> any StreamedPort
}

/// A process a session relays: its output as events, the client's input, terminal and flow control.
public protocol StreamedProcess: Sendable {
    var events: AsyncStream<ProcessStreamEvent> { get }
    var tty: Bool { get }
    /// Sends stdin bytes; returns once the runtime's window has room again.
    func write(_ data: [UInt8]) async throws(CocoonError)
    /// The client's end of input.
    func closeStdin() async
    func resize(width: UInt16, height: UInt16) async
    /// The client took `bytes` of output: the process may send that much more.
    func delivered(_ bytes: Int)
    /// The session is over.
    func end() async
}

/// A forwarded connection a session relays, with the same flow control.
public protocol StreamedPort: Sendable {
    var events: AsyncStream<PortStreamEvent> { get }
    func write(_ data: [UInt8]) async throws(CocoonError)
    /// The client sends nothing more (half-close).
    func closeWrite() async
    func delivered(_ bytes: Int)
    /// Drops the connection both ways.
    func end() async
}
