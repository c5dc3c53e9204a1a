import AgentClient
import Errors
import Foundation
import Models
import Spawn
import Synchronization

/// One streaming exec or attach session's end of its process in the guest: its output as events,
/// and stdin, resize and end going the other way. Output of an exec is flow-controlled: the
/// session calls `delivered` as its client takes bytes, and the agent sends no more than
/// `ContainerManager.execWindow` ahead.
public final class ProcessStream: Sendable {
    public let events: AsyncStream<ProcessStreamEvent>
    public let tty: Bool
    let agent: any GuestAgent
    let containerID: String
    /// Empty for an attach (the container's own process).
    let execID: String
    /// The attach session's id in `routes` (0 for an exec).
    let attachID: UInt64
    let timeout: Duration
    let routes: StreamRoutes
    let finish: @Sendable () async -> Void
    /// An attach with stdin to a container created with stdin_once: the client's end of input
    /// closes the container's stdin (as containerd and CRI-O do: `kubectl attach -i` ends then).
    let endOfInputClosesStdin: Bool
    private let writer = StreamWriter()

    init(
        events: AsyncStream<ProcessStreamEvent>, tty: Bool, agent: any GuestAgent, containerID: String, execID: String,
        attachID: UInt64 = 0, timeout: Duration, routes: StreamRoutes, endOfInputClosesStdin: Bool = false,
        finish: @escaping @Sendable () async -> Void
    ) {
        self.endOfInputClosesStdin = endOfInputClosesStdin
        self.routes = routes
        self.attachID = attachID
        self.events = events
        self.tty = tty
        self.agent = agent
        self.containerID = containerID
        self.execID = execID
        self.timeout = timeout
        self.finish = finish
    }

    /// Sends bytes for the process's stdin; returns once fewer than `StreamWriter.limit` bytes are
    /// on their way (a process not reading holds the client back there).
    public func write(_ data: [UInt8]) async throws(CocoonError) {
        let (agent, containerID, execID, timeout) = (agent, containerID, execID, timeout)
        do {
            try await writer.write(data.count) {
                agent.sendStdin(container: containerID, exec: execID, data, close: false, timeout: timeout)
            }
        } catch {
            throw CocoonError.from(error, "stdin of \(execID.isEmpty ? containerID : execID)")
        }
    }

    /// Closes an exec's stdin (its reads see EOF). An attach client's end of input leaves the
    /// container's stdin open for the next attach, unless the container has stdin_once: then it
    /// is closed at once (the container sees EOF, and its exit ends the session). A terminal has no
    /// end of input of its own: the container's gets a ^D first, the end a user types (a shell at
    /// its prompt exits, `cat` ends), where containerd hangs the terminal up.
    public func closeStdin() async {
        guard !execID.isEmpty || endOfInputClosesStdin else { return }
        let endOfTransmission: [UInt8] = tty && execID.isEmpty ? [0x04] : []
        // try?: a process that exited has no stdin left to close (the close follows the writes on
        // the channel, so it need not wait for them)
        try? await agent.writeStdin(
            container: containerID, exec: execID, endOfTransmission, close: true, timeout: timeout)
    }

    public func resize(width: UInt16, height: UInt16) async {
        guard tty, width > 0, height > 0 else { return }
        // try?: a resize racing the process's exit is not an error of the session
        try? await agent.resize(
            container: containerID, exec: execID, width: UInt32(width), height: UInt32(height), timeout: timeout)
    }

    /// The client took `bytes` of output: the agent may send that much more.
    public func delivered(_ bytes: Int) {
        guard !execID.isEmpty else {
            routes.attachDelivered(containerID, id: attachID, bytes)
            return
        }
        routes.execDelivered(execID, bytes)
        agent.ackOutput(container: containerID, exec: execID, bytes: bytes)
    }

    /// The session is over (the client left or the process ended): an exec still running is killed;
    /// an attach leaves the container running.
    public func end() async { await finish() }
}

/// One forwarded connection to a port inside a pod: the pod's bytes as events, the client's going
/// the other way. Flow control as for `ProcessStream`.
public final class PortConnection: Sendable {
    public let events: AsyncStream<PortStreamEvent>
    let agent: any GuestAgent
    let id: UInt64
    let timeout: Duration
    let routes: StreamRoutes
    let finish: @Sendable () async -> Void
    private let writer = StreamWriter()

    init(
        events: AsyncStream<PortStreamEvent>, agent: any GuestAgent, id: UInt64, timeout: Duration,
        routes: StreamRoutes, finish: @escaping @Sendable () async -> Void
    ) {
        self.routes = routes
        self.events = events
        self.agent = agent
        self.id = id
        self.timeout = timeout
        self.finish = finish
    }

    /// Sends bytes to the pod's side; returns once fewer than `StreamWriter.limit` bytes are on
    /// their way.
    public func write(_ data: [UInt8]) async throws(CocoonError) {
        let (agent, id, timeout) = (agent, id, timeout)
        do {
            try await writer.write(data.count) { agent.sendPort(connection: id, data, close: false, timeout: timeout) }
        } catch {
            throw CocoonError.from(error, "port-forward connection")
        }
    }

    /// The client sends nothing more (half-close).
    public func closeWrite() async {
        // try?: a connection the pod already closed has nothing to half-close
        try? await agent.writePort(connection: id, [], close: true, timeout: timeout)
    }

    public func delivered(_ bytes: Int) {
        routes.portDelivered(id, bytes)
        agent.ackPort(connection: id, bytes: bytes)
    }

    /// Drops the connection both ways.
    public func end() async { await finish() }
}

/// Streaming exec, attach and port-forward: sessions of the CRI streaming server, linked to the
/// processes and connections in the guest through the pod's agent.
extension ContainerManager {
    /// Output bytes an exec may have in flight between agent and client.
    public static let execWindow = 256 << 10
    /// How long a stdin or port write may wait for the guest to take it (a process not reading).
    static let streamWrite = Duration.seconds(4 * 3600)

    /// The running container's full id, its pod and agent; NOT_FOUND or FAILED_PRECONDITION otherwise.
    public func runningContainer(_ idOrPrefix: String) async throws(CocoonError) -> (
        record: ContainerRecord, agent: any GuestAgent
    ) {
        let id = try resolve(idOrPrefix)
        guard let record = records[id] else { throw .notFound("container \"\(idOrPrefix)\" not found") }
        guard record.state == .running else {
            throw .failedPrecondition("container \(id) is not running (\(record.state.rawValue))")
        }
        let (_, agent) = try await pods.readyAgent(record.sandboxID)
        return (record, agent)
    }

    /// Starts a command in a running container with streams for a client.
    public func openExec(_ request: ExecRequest) async throws(CocoonError) -> ProcessStream {
        guard !request.command.isEmpty, !request.command[0].isEmpty else {
            throw .invalidArgument("cmd must not be empty")
        }
        let (record, agent) = try await runningContainer(request.containerID)
        let execID = "s" + String(UInt64.random(in: 1...UInt64.max), radix: 16)
        var process = record.process ?? ProcessSpec(args: [])
        process.args = request.command
        if request.tty, !process.env.contains(where: { $0.hasPrefix("TERM=") }) { process.env.append("TERM=xterm") }
        let events = routes.addExec(execID, pod: record.sandboxID, container: record.id)
        var stdio = ExecStdio(stdin: request.stdin, tty: request.tty, outputWindow: Self.execWindow)
        if let size = request.size, size.width > 0, size.height > 0 {
            stdio.size = ExecStdio.Size(width: size.width, height: size.height)
        }
        do {
            _ = try await agent.exec(
                container: record.id, execID: execID, process: process, stdio: stdio, timeout: agentCall)
        } catch {
            routes.removeExec(execID)
            throw CocoonError.from(error, "exec in container \(record.id)")
        }
        let routes = self.routes
        let containerID = record.id
        let agentCall = self.agentCall
        let ended = Flag()
        return ProcessStream(
            events: events, tty: request.tty, agent: agent, containerID: containerID, execID: execID,
            timeout: Self.streamWrite, routes: routes
        ) {
            guard ended.set() else { return }
            routes.removeExec(execID)
            // try?: an exec that already exited has nothing to kill
            try? await agent.signal(container: containerID, exec: execID, signal: SIGKILL, timeout: agentCall)
        }
    }

    /// Attaches to a running container's process: its output from now on, and its stdin when it
    /// was created with stdin (a container created with stdin_once has it closed when the first
    /// attach with stdin ends).
    public func attach(_ idOrPrefix: String, stdin: Bool) async throws(CocoonError) -> ProcessStream {
        let (record, agent) = try await runningContainer(idOrPrefix)
        let stdio = record.stdio ?? ContainerRecord.StdioConfig()
        if stdin && !stdio.stdin {
            throw .invalidArgument("container \(record.id) was not created with stdin: attach without stdin")
        }
        if stdin && stdinOnceUsed.contains(record.id) {
            throw .failedPrecondition("container \(record.id) has stdin_once and its stdin was closed already")
        }
        let (attachID, events) = routes.addAttach(record.id)
        let routes = self.routes
        let containerID = record.id
        let closeStdinAtEnd = stdin && stdio.stdinOnce
        if closeStdinAtEnd { stdinOnceUsed.insert(record.id) }
        let ended = Flag()
        return ProcessStream(
            events: events, tty: stdio.tty, agent: agent, containerID: containerID, execID: "", attachID: attachID,
            timeout: Self.streamWrite, routes: routes, endOfInputClosesStdin: closeStdinAtEnd
        ) {
            guard ended.set() else { return }
            routes.removeAttach(containerID, id: attachID)
            if closeStdinAtEnd {
                // try?: the container may have exited; its stdin is gone then
                try? await agent.writeStdin(container: containerID, exec: "", [], close: true, timeout: .seconds(10))
            }
        }
    }

    /// Opens a connection to 127.0.0.1:port inside a READY pod.
    public func dial(pod podID: String, port: UInt16) async throws(CocoonError) -> PortConnection {
        let (fullPodID, agent) = try await pods.readyAgent(podID)
        let connection = UInt64.random(in: 1...UInt64.max)
        let events = routes.addPort(connection, pod: fullPodID)
        do {
            try await agent.openPort(connection: connection, port: port, window: Self.execWindow, timeout: agentCall)
        } catch {
            routes.removePort(connection)
            if case .agent(.failedPrecondition, let message) = error {
                throw .failedPrecondition(message)
            }
            throw CocoonError.from(error, "port-forward to port \(port) of pod \(fullPodID)")
        }
        let routes = self.routes
        let agentCall = self.agentCall
        let ended = Flag()
        return PortConnection(
            events: events, agent: agent, id: connection, timeout: Self.streamWrite, routes: routes
        ) {
            guard ended.set() else { return }
            routes.removePort(connection)
            // try?: the pod may be gone; its connections went with it
            try? await agent.closePort(connection: connection, timeout: agentCall)
        }
    }
}

/// A one-way switch: `set` returns true the first time only.
final class Flag: Sendable {
    private let value = Mutex(false)
    func set() -> Bool {
        value.withLock { was in
            defer { was = true }
            return !was
        }
    }
}
