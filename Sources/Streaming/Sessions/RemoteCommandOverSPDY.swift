import Errors
import Logging
import NIOCore
import Synchronization

/// Exec and attach over SPDY, as the kubelet's server does them: the client opens an error stream
/// and one stream per standard stream it wants (by the `streamType` header), the server accepts
/// each, runs the process once all expected streams are there, relays stdin, resize and output, and
/// ends with the result on the error stream (a metav1.Status from v4 on).
struct RemoteCommandOverSPDY {
    let request: StreamingRequest
    let version: StreamProtocol
    let runtime: any StreamingRuntime
    let logger: Logger
    /// Touched by every byte either way; the server ends the session when it has been idle too long.
    let activity: IdleWatch
    /// How long the client has to open its streams.
    let streamCreationTimeout: Duration

    private struct Streams {
        var error: UInt32?
        var stdin: UInt32?
        var stdout: UInt32?
        var stderr: UInt32?
        var resize: UInt32?
    }

    func serve(_ channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>) async throws {
        let connection = try SPDYConnection(activity: activity)
        let held = HeldSession<SizedStart>()
        try await channel.executeThenClose { inbound, outbound in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    // try?: a client gone mid-write ends the session like any other end
                    try? await connection.writer.run(outbound)
                    outbound.finish()  // closes the connection, which ends the read loop
                }
                let deadline = channel.channel
                let timer = Task {
                    try await Task.sleep(for: streamCreationTimeout)
                    if held.value == nil { try await deadline.close() }
                }
                defer { timer.cancel() }
                do {
                    try await readLoop(inbound, connection: connection, held: held, group: &group)
                } catch {
                    logger.debug("exec/attach session ended", metadata: ["error": "\(error)"])
                }
                await held.value?.end()  // also a process whose start was still under way
                await connection.finish()
            }
        }
    }

    /// Reads the client until it leaves or the process's result is sent.
    private func readLoop(
        _ inbound: NIOAsyncChannelInboundStream<ByteBuffer>, connection: SPDYConnection,
        held: HeldSession<SizedStart>, group: inout ThrowingTaskGroup<Void, any Error>
    ) async throws {
        let wanted = request.streams
        var streams = Streams()
        var stdinOpen = true
        var resizeCarry: [UInt8] = []
        var input = StdinRoute()
        defer { input.cancel() }
        for try await buffer in inbound {
            guard let events = await connection.receive(buffer, logger: logger) else { return }
            for event in events {
                switch event {
                case .streamOpened(let id, let headers):
                    guard await accept(id, headers, into: &streams, connection: connection) else { continue }
                    startIfReady(streams, wanted: wanted, held: held, connection: connection, group: &group)
                case .data(let id, let bytes):
                    guard let starting = held.value else { continue }
                    if id == streams.resize {
                        for size in TerminalSize.parse(bytes, carry: &resizeCarry) where !starting.offer(size) {
                            await starting.process()?.resize(width: size.width, height: size.height)
                        }
                        continue
                    }
                    if id == streams.stdin, stdinOpen {
                        await writeStdin(
                            bytes, stream: id, gate: starting, open: &stdinOpen, input: &input,
                            connection: connection, group: &group)
                    }
                case .remoteClosed(let id):
                    guard id == streams.stdin, let starting = held.value else { continue }
                    if let pump = input.pump {
                        pump.end()
                    } else {
                        if input.early == nil, !starting.hasSettled { input.early = EarlyStdin(starting) }
                        if let pending = input.early {
                            pending.end()  // after the held input, once the process runs
                            continue
                        }
                        await starting.process()?.closeStdin()
                    }
                case .streamReset(let id):
                    if id == streams.stdin || id == streams.stdout || id == streams.error { return }
                case .windowOpened:
                    break  // SPDYConnection's
                case .sessionEnded:
                    return
                }
            }
        }
    }

    /// Records a stream the client opened by its type and accepts it; false (after resetting it)
    /// for a type we do not know.
    private func accept(
        _ id: UInt32, _ headers: SPDYHeaders, into streams: inout Streams, connection: SPDYConnection
    ) async -> Bool {
        switch headers["streamtype"] {
        case "error": streams.error = id
        case "stdin": streams.stdin = id
        case "stdout": streams.stdout = id
        case "stderr": streams.stderr = id
        case "resize": streams.resize = id
        default:
            await connection.reset(id)
            return false
        }
        await connection.accept(id)
        return true
    }

    /// Starts the process (once) as soon as the client has opened as many streams as the request
    /// wants, its error, stdin and stdout among them. Counted as the kubelet's server counts them: an
    /// attach to a container with a terminal (the kubelet asks with the container's tty) from a
    /// client without one (`kubectl attach -i`) opens stderr where a terminal's client opens resize.
    private func startIfReady(
        _ streams: Streams, wanted: (stdin: Bool, stdout: Bool, stderr: Bool, tty: Bool),
        held: HeldSession<SizedStart>, connection: SPDYConnection, group: inout ThrowingTaskGroup<Void, any Error>
    ) {
        let expected =
            1 + [wanted.stdin, wanted.stdout, wanted.stderr, wanted.tty && version.supportsResize].filter { $0 }.count
        let opened = [streams.error, streams.stdin, streams.stdout, streams.stderr, streams.resize].compactMap { $0 }
        let ready =
            streams.error != nil && (streams.stdin != nil) == wanted.stdin
            && (streams.stdout != nil) == wanted.stdout && opened.count >= expected
        guard ready, held.value == nil else { return }
        // A terminal's process waits (briefly) for the client's first size.
        let gate = wanted.tty && streams.resize != nil ? SizedStart() : SizedStart(patience: .zero)
        held.value = gate
        group.addTask { try await run(gate, streams: streams, connection: connection) }
    }

    /// The client's stdin bytes to the process: through a `ClientInputPump` for a flow-controlled
    /// client (it waits for the start itself), else at once, or held in `EarlyStdin` while the
    /// process has not started (`stdinOpen` false once the process takes no more).
    private func writeStdin(
        _ bytes: [UInt8], stream id: UInt32, gate: SizedStart, open stdinOpen: inout Bool,
        input: inout StdinRoute, connection: SPDYConnection,
        group: inout ThrowingTaskGroup<Void, any Error>
    ) async {
        if await connection.flowControlled {
            if input.pump == nil {
                // Flow control may start after some input was held: that input goes first.
                let earlier = input.early  // still the route's, to cancel
                input.pump = ClientInputPump(
                    stream: id, connection: connection, group: &group,
                    write: { bytes in
                        if let earlier, await !earlier.drain() { return false }
                        // false: the process never started, closed its stdin or ended; the rest is dropped
                        guard let process = await gate.process() else { return false }
                        return (try? await process.write(bytes)) != nil
                    },
                    close: {
                        if let earlier { _ = await earlier.drain() }
                        await gate.process()?.closeStdin()
                    })
            }
            input.pump?.send(bytes)
            return
        }
        if !gate.hasSettled {
            let pending = input.early ?? EarlyStdin(gate)
            input.early = pending
            if pending.take(bytes) { return }
        }
        if let pending = input.early {
            input.early = nil
            guard await pending.drain() else {
                stdinOpen = false
                return
            }
        }
        guard let process = await gate.process() else { return }
        do {
            try await process.write(bytes)
        } catch {
            stdinOpen = false  // the process closed its stdin or ended: the rest is dropped
        }
    }

    /// Starts the process once `gate` has its size, then sends its output; a failed start is
    /// reported on the error stream and ends the session.
    private func run(
        _ gate: SizedStart, streams: Streams, connection: SPDYConnection
    ) async throws {
        switch await gate.start(request, on: runtime) {
        case .success(let process)?:
            try await pumpOutput(process, streams: streams, connection: connection)
        case .failure(let error)?:
            if let errorStream = streams.error {
                await connection.send(errorStream, RemoteCommandStatus.failure(error.message).encoded(for: version))
            }
            await connection.finish()
        case nil:
            return  // the session ended before its process started
        }
    }

    /// Output to the client; the result on the error stream at the end, then the session closes.
    private func pumpOutput(_ process: any StreamedProcess, streams: Streams, connection: SPDYConnection) async throws {
        var status = RemoteCommandStatus.success
        for await event in process.events {
            switch event {
            case .stdout(let data), .stderr(let data):
                let isErr: Bool = if case .stderr = event { true } else { false }
                let target = (isErr ? streams.stderr : nil) ?? streams.stdout
                guard let target else {
                    process.delivered(data.count)
                    continue
                }
                await connection.send(target, data) { process.delivered(data.count) }
            case .exit(let code):
                if code != 0, case .exec(let exec, _, _) = request {
                    status = .exitCode(code, command: exec.command)
                }
            case .failed(let message):
                status = .failure(message)
            }
        }
        if let errorStream = streams.error {
            let bytes = status.encoded(for: version)
            if !bytes.isEmpty { await connection.send(errorStream, bytes) }
        }
        await connection.finish()
    }
}

/// The process or connection a session opened, for the code that ends the session.
final class HeldSession<Value: Sendable>: Sendable {
    private let box = Mutex<Value?>(nil)
    var value: Value? {
        get { box.withLock { $0 } }
        set { box.withLock { $0 = newValue } }
    }
}

/// Where a session's stdin goes: a flow-controlled client's through a task of its own
/// (`ClientInputPump`); another's at once, or held in `EarlyStdin` while its process has not
/// started, so the read loop is never held up by the start (the size may come after the input).
private struct StdinRoute {
    var pump: ClientInputPump?
    var early: EarlyStdin?

    func cancel() {
        pump?.cancel()
        early?.cancel()
    }
}
