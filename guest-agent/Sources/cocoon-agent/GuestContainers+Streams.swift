import AgentAPI
import AgentService
import CAgentSys
import ContainerCore
import Glibc

/// The stdin of a process the host writes: a pipe, or the process's terminal.
struct ProcessInput {
    var fd: Int32
    var pending = PendingWrite()
}

/// How a new process's standard streams are set up.
struct StdioOptions {
    var stdin: Bool
    var tty: Bool
    /// Output flow control (bytes unacknowledged), 0 for none.
    var window: Int
    /// The devpts multiplexer a terminal comes from (the container's own for an exec); nil: the
    /// process opens it in its container's devpts once that exists (a container's first process).
    var ptmx: String?
    /// The terminal's size (rows, columns) before the process runs; nil: 0x0 until a resize.
    var size: (rows: UInt16, columns: UInt16)? = nil
}

/// Stdin, terminals and output flow control of the containers' processes.
extension GuestContainers {
    /// Creates the process's stdio (pipes or a terminal), runs `body` with the child's ends, closes
    /// those, and registers the agent's ends for the poll loop.
    mutating func withStdio(
        _ owner: Owner, _ options: StdioOptions,
        _ body: (ContainerLauncher.Stdio) throws(ContainerCoreError) -> Int32
    ) throws(AgentFailure) -> Int32 {
        var ends = StdioEnds()
        let stdio: ContainerLauncher.Stdio
        if options.tty, options.ptmx == nil {
            stdio = try ends.openConsole()
        } else if options.tty, let ptmx = options.ptmx {
            stdio = try ends.openTerminal(ptmx, options)
        } else {
            stdio = try ends.openPipes(options)
        }
        let pid: Int32
        do {
            pid = try body(stdio)
        } catch {
            ends.closeAll()
            switch error {
            case .invalidSpec(let m): throw .invalid(m)
            case .notFound(let m): throw .notFound(m)
            default: throw .internal("\(error)")
            }
        }
        for fd in ends.childEnds { close(fd) }
        if ends.console >= 0 { try ends.receiveTerminal(of: pid, stdin: options.stdin) }
        for fd in ends.agentEnds { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
        for (fd, stream) in ends.outputs { pipes[fd] = (owner, stream) }
        if ends.input >= 0 { inputs[owner] = ProcessInput(fd: ends.input) }
        if ends.terminal >= 0 { terminals[owner] = ends.terminal }
        if options.window > 0 { windows[owner] = OutputWindow(limit: options.window) }
        return pid
    }

    private func owner(_ containerID: String, _ execID: String) throws(AgentFailure) -> Owner {
        guard containers[containerID] != nil else { throw .notFound("container \(containerID) not found in the guest") }
        return Owner(containerID: containerID, execID: execID)
    }

    /// Queues bytes for a process's stdin and writes what fits now. The request is answered when
    /// they are all written (at once, or later from `flushInput`).
    mutating func writeStdin(_ r: Cocoon_Agent_V4_WriteStdinRequest, replyTo id: UInt64) throws(AgentFailure)
        -> [DeferredReply]
    {
        let owner = try owner(r.containerID, r.execID)
        guard let fd = inputs[owner]?.fd else {
            throw .precondition("process \(r.execID.isEmpty ? r.containerID : r.execID) has no open stdin")
        }
        // In place (`inputs[owner]?.`): a copy of the entry would copy the queued bytes too.
        guard inputs[owner]?.pending.add(r.data, close: r.close, replyTo: id, writingTo: fd, socket: false) == true
        else {
            throw .precondition("more than \(PendingWrite.limit) bytes of stdin in flight")
        }
        return flushInput(fd)
    }

    /// Stdin fds with bytes waiting for room.
    var blockedInputFDs: [Int32] { inputs.values.filter { $0.pending.hasWork }.map(\.fd) }

    /// Writes a stdin's queued bytes; the requests now answered.
    mutating func flushInput(_ fd: Int32) -> [DeferredReply] {
        guard let owner = inputs.first(where: { $0.value.fd == fd })?.key,
            let progress = inputs[owner]?.pending.flush(fd, socket: false)
        else { return [] }
        switch progress {
        case .blocked:
            return []
        case .done(let waiters, let closeNow):
            if closeNow { releaseInput(owner) }
            return waiters.map { DeferredReply(id: $0) }
        case .failed(let error):
            let waiters = releaseInput(owner)
            return waiters.map { DeferredReply(id: $0, failure: .precondition("stdin closed: \(error)")) }
        }
    }

    /// Closes a process's stdin; requests still waiting on it are returned (to be failed).
    @discardableResult
    mutating func releaseInput(_ owner: Owner) -> [UInt64] {
        var waiters: [UInt64] = []
        if var input = inputs.removeValue(forKey: owner) {
            waiters = input.pending.abandon()
            close(input.fd)
        }
        if let terminal = terminals.removeValue(forKey: owner) { close(terminal) }
        return waiters
    }

    mutating func resize(_ r: Cocoon_Agent_V4_ResizeRequest) throws(AgentFailure) {
        let owner = try owner(r.containerID, r.execID)
        guard let terminal = terminals[owner] else { throw .precondition("process has no terminal") }
        guard r.width > 0, r.height > 0, r.width <= UInt16.max, r.height <= UInt16.max else {
            throw .invalid("terminal size \(r.width)x\(r.height) is out of range")
        }
        guard cocoon_set_winsize(terminal, UInt16(r.height), UInt16(r.width)) == 0 else {
            throw .internal("resize: \(SystemError("ioctl"))")
        }
    }

    /// The host delivered output; a process whose exit is held may now finish sending.
    mutating func ackOutput(_ r: Cocoon_Agent_V4_AckOutputRequest) -> [Outgoing] {
        let owner = Owner(containerID: r.containerID, execID: r.execID)
        guard windows[owner] != nil else { return [] }
        windows[owner]?.acked(r.bytes)
        guard heldExits[owner] != nil else { return [] }
        var events: [Outgoing] = []
        for fd in pipes.filter({ $0.value.0 == owner }).map(\.key) { events += drain(fd) }
        return events
    }
}

/// The fds `withStdio` makes for a new process: the child's ends (closed once it started), the
/// agent's ends, and which of those carry output, stdin and the terminal.
private struct StdioEnds {
    var childEnds: [Int32] = []
    var agentEnds: [Int32] = []
    var outputs: [(Int32, Cocoon_Agent_V4_ProcessOutput.Stream)] = []
    var input: Int32 = -1
    var terminal: Int32 = -1
    var console: Int32 = -1

    /// Closes every fd made so far (a failed start).
    func closeAll() {
        for fd in childEnds + agentEnds { close(fd) }
    }

    /// A socket on which a container's first process sends the terminal it opens in its own devpts.
    mutating func openConsole() throws(AgentFailure) -> ContainerLauncher.Stdio {
        var pair: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
            throw .internal("terminal socket: \(SystemError("socketpair"))")
        }
        childEnds.append(pair[1])
        agentEnds.append(pair[0])
        console = pair[0]
        return ContainerLauncher.Stdio(terminal: true, console: pair[1])
    }

    /// A terminal from `ptmx` (an exec's, from its container's devpts), sized as `options` asks.
    mutating func openTerminal(_ ptmx: String, _ options: StdioOptions) throws(AgentFailure)
        -> ContainerLauncher.Stdio
    {
        var master: Int32 = -1
        var slave: Int32 = -1
        guard cocoon_open_pty(ptmx, &master, &slave) == 0 else {
            throw .internal("terminal from \(ptmx): \(SystemError("open pty"))")
        }
        childEnds.append(slave)
        agentEnds.append(master)
        outputs.append((master, .stdout))
        // Sized before the process runs, so its first `stty size` sees what the client has.
        if let size = options.size, cocoon_set_winsize(master, size.rows, size.columns) != 0 {
            closeAll()
            throw .internal("terminal size: \(SystemError("ioctl"))")
        }
        terminal = dup(master)
        if terminal >= 0 { agentEnds.append(terminal) }
        if options.stdin {
            input = dup(master)
            if input >= 0 { agentEnds.append(input) }
        }
        guard terminal >= 0, !options.stdin || input >= 0 else {
            closeAll()
            throw .internal("dup terminal: \(SystemError("dup"))")
        }
        return ContainerLauncher.Stdio(input: slave, output: slave, error: slave, terminal: true)
    }

    /// Pipes for stdout and stderr, and for stdin if `options` asks for it.
    mutating func openPipes(_ options: StdioOptions) throws(AgentFailure) -> ContainerLauncher.Stdio {
        var fds: [Int32] = []
        for _ in 0..<(options.stdin ? 3 : 2) {
            var pair: [Int32] = [-1, -1]
            guard pipe(&pair) == 0 else {
                closeAll()
                throw .internal("pipe: \(SystemError("pipe"))")
            }
            for fd in pair { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
            fds += pair
            childEnds += pair  // until sorted below: closed on failure either way
        }
        // fds: [out read, out write, err read, err write, (in read, in write)]
        childEnds = [fds[1], fds[3]]
        agentEnds += [fds[0], fds[2]]
        outputs = [(fds[0], .stdout), (fds[2], .stderr)]
        if options.stdin {
            childEnds.append(fds[4])
            agentEnds.append(fds[5])
            input = fds[5]
        }
        return ContainerLauncher.Stdio(
            input: options.stdin ? fds[4] : -1, output: fds[1], error: fds[3])
    }

    /// Takes the terminal master the started process `pid` sent on the console socket, which then
    /// carries its output (and stdin); on failure kills and reaps the process and closes the agent's ends.
    mutating func receiveTerminal(of pid: Int32, stdin: Bool) throws(AgentFailure) {
        // The process sent its terminal before it exec'd, so before `body` returned.
        func abandon(_ why: String) -> AgentFailure {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            // blocking: the agent's own thread (not a cooperative pool); just killed
            waitpid(pid, &status, 0)
            for fd in agentEnds { close(fd) }
            return .internal(why)
        }
        let master: Int32
        do {
            master = try ContainerLauncher.receiveTerminal(console)
        } catch {
            throw abandon("\(error)")
        }
        close(console)
        agentEnds = [master]
        outputs = [(master, .stdout)]
        terminal = dup(master)
        input = stdin ? dup(master) : -1
        agentEnds += [terminal, input].filter { $0 >= 0 }
        guard terminal >= 0, !stdin || input >= 0 else {
            throw abandon("dup terminal: \(SystemError("dup"))")
        }
    }
}
