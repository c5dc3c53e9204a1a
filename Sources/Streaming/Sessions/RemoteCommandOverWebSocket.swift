import Errors
import Logging
import NIOCore
import NIOWebSocket

/// Exec and attach over WebSocket (the `channel.k8s.io` family): every message is a channel byte
/// and data (0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize; v5 adds 255 = close a channel). The
/// process starts at once; the result goes on channel 3 and a close frame (1000) ends the session.
struct RemoteCommandOverWebSocket {
    let request: StreamingRequest
    /// Nil: no subprotocol was offered (v1 semantics, binary).
    let version: StreamProtocol?
    let runtime: any StreamingRuntime
    let logger: Logger
    /// Touched by every byte either way; the server ends the session when it has been idle too long.
    let activity: IdleWatch

    private var wire: StreamProtocol { version ?? .v1 }

    func serve(_ channel: NIOAsyncChannel<WebSocketFrame, WebSocketFrame>) async throws {
        let writer = FrameWriter<WebSocketFrame>(activity: activity)
        try await channel.executeThenClose { inbound, outbound in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    // try?: a client gone mid-write ends the session like any other end
                    try? await writer.run(outbound)
                    outbound.finish()
                }
                // The kubelet's server opens with an empty message on the lowest channel it writes.
                let wanted = request.streams
                let first = wanted.stdout ? WebSocketChannels.stdout : (wanted.stderr ? WebSocketChannels.stderr : 3)
                send(.data(channel: first, []), writer)
                // A terminal's process waits (briefly) for the client's first size.
                let gate = wanted.tty && wire.supportsResize ? SizedStart() : SizedStart(patience: .zero)
                let connection = channel.channel
                group.addTask {
                    await run(gate, writer: writer)
                    // Our close frame is out: a client that never answers it is not waited for long.
                    try? await Task.sleep(for: .seconds(2))
                    // try?: the connection may be closed already
                    try? await connection.close()
                }
                do {
                    try await readLoop(inbound, gate: gate, writer: writer)
                } catch {
                    logger.debug("exec/attach WebSocket session ended", metadata: ["error": "\(error)"])
                }
                await gate.end()  // also a process whose start was still under way
                writer.finish()
            }
        }
    }

    /// Starts the process once `gate` has its size and sends its output and result; a failed start
    /// is reported on the error channel and closes the session.
    private func run(_ gate: SizedStart, writer: FrameWriter<WebSocketFrame>) async {
        switch await gate.start(request, on: runtime) {
        case .success(let process)?:
            await pumpOutput(process, writer: writer)
        case .failure(let error)?:
            send(
                .data(channel: WebSocketChannels.error, RemoteCommandStatus.failure(error.message).encoded(for: wire)),
                writer)
            close(writer)
        case nil:
            return  // the session ended before its process started
        }
    }

    private func send(
        _ message: WebSocketChannels.Message, _ writer: FrameWriter<WebSocketFrame>,
        written: (@Sendable () -> Void)? = nil
    ) {
        let (text, bytes) = WebSocketChannels.encode(message, protocol: wire)
        writer.enqueue(
            WebSocketFrame(fin: true, opcode: text ? .text : .binary, data: ByteBuffer(bytes: bytes)), written: written)
    }

    private func close(_ writer: FrameWriter<WebSocketFrame>) {
        var data = ByteBuffer()
        data.write(webSocketErrorCode: .normalClosure)
        writer.enqueue(WebSocketFrame(fin: true, opcode: .connectionClose, data: data))
        writer.finish()
    }

    private func readLoop(
        _ inbound: NIOAsyncChannelInboundStream<WebSocketFrame>, gate: SizedStart,
        writer: FrameWriter<WebSocketFrame>
    ) async throws {
        var resizeCarry: [UInt8] = []
        var stdinOpen = request.streams.stdin
        // Input before the process runs waits here, not the read loop (the size may come after it).
        var early: EarlyStdin?
        defer { early?.cancel() }
        for try await frame in inbound {
            activity.touch()
            switch frame.opcode {
            case .ping:
                writer.enqueue(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData))
            case .connectionClose:
                return
            case .binary, .text:
                guard
                    let message = WebSocketChannels.decode(frame.unmaskedBytes, protocol: wire)
                else { continue }
                switch message {
                case .data(WebSocketChannels.stdin, let bytes) where stdinOpen:
                    if !gate.hasSettled {
                        let pending = early ?? EarlyStdin(gate)
                        early = pending
                        if pending.take(bytes) { continue }
                    }
                    stdinOpen = await writeStdin(bytes, gate: gate, early: &early)
                case .data(WebSocketChannels.resize, let bytes):
                    for size in TerminalSize.parse(bytes, carry: &resizeCarry) where !gate.offer(size) {
                        await gate.process()?.resize(width: size.width, height: size.height)
                    }
                case .close(WebSocketChannels.stdin) where stdinOpen:
                    stdinOpen = false
                    if early == nil, !gate.hasSettled { early = EarlyStdin(gate) }
                    if let pending = early {
                        pending.end()  // after the held input, once the process runs
                        continue
                    }
                    await gate.process()?.closeStdin()
                default:
                    continue
                }
            default:
                continue
            }
        }
    }

    /// Writes the client's stdin once the input held before the start is written: false once the
    /// process takes no more.
    private func writeStdin(_ bytes: [UInt8], gate: SizedStart, early: inout EarlyStdin?) async -> Bool {
        if let pending = early {
            early = nil
            guard await pending.drain() else { return false }
        }
        guard let process = await gate.process() else { return true }
        do {
            try await process.write(bytes)
            return true
        } catch {
            return false
        }
    }

    private func pumpOutput(_ process: any StreamedProcess, writer: FrameWriter<WebSocketFrame>) async {
        let wanted = request.streams
        var status = RemoteCommandStatus.success
        for await event in process.events {
            switch event {
            case .stdout(let data), .stderr(let data):
                let isErr: Bool = if case .stderr = event { true } else { false }
                let channel = isErr && wanted.stderr ? WebSocketChannels.stderr : WebSocketChannels.stdout
                guard isErr ? (wanted.stderr || wanted.stdout) : wanted.stdout else {
                    process.delivered(data.count)
                    continue
                }
                send(.data(channel: channel, data), writer) { process.delivered(data.count) }
            case .exit(let code):
                if code != 0, case .exec(let exec, _, _) = request { status = .exitCode(code, command: exec.command) }
            case .failed(let message):
                status = .failure(message)
            }
        }
        let bytes = status.encoded(for: wire)
        if !bytes.isEmpty || wire.reportsJSONStatus { send(.data(channel: WebSocketChannels.error, bytes), writer) }
        close(writer)
    }
}
