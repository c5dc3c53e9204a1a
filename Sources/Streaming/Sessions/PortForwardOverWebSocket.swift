import Errors
import Logging
import NIOCore
import NIOWebSocket

/// Port-forward over WebSocket (`portforward.k8s.io`): one connection per requested port, opened at
/// once; port i has data channel 2i and error channel 2i+1, and the first message on each is the
/// port number (two bytes, little-endian).
struct PortForwardOverWebSocket {
    let podID: String
    let ports: [UInt16]
    let runtime: any StreamingRuntime
    let logger: Logger
    /// Touched by every byte either way; the server ends the session when it has been idle too long.
    let activity: IdleWatch

    func serve(_ channel: NIOAsyncChannel<WebSocketFrame, WebSocketFrame>) async throws {
        let writer = FrameWriter<WebSocketFrame>(activity: activity)
        let open = HeldSession<[any StreamedPort]>()
        try await channel.executeThenClose { inbound, outbound in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    // try?: a client gone mid-write ends the session like any other end
                    try? await writer.run(outbound)
                    outbound.finish()
                }
                let connections = await dialPorts(writer: writer, open: open, group: &group)
                if connections.allSatisfy({ $0 == nil }) {
                    // Nothing to relay: the errors are sent, the session ends.
                    endSession(writer)
                    return
                }
                do {
                    try await readLoop(inbound, connections: connections, writer: writer)
                } catch {
                    logger.debug("port-forward WebSocket session ended", metadata: ["error": "\(error)"])
                }
                for c in open.value ?? [] { await c.end() }
                writer.finish()
            }
        }
    }

    /// Announces each port on its two channels and dials it, relaying the ones that connect; a
    /// failed dial is reported on its error channel and leaves nil in its place.
    private func dialPorts(
        writer: FrameWriter<WebSocketFrame>, open: HeldSession<[any StreamedPort]>,
        group: inout ThrowingTaskGroup<Void, any Error>
    ) async -> [(any StreamedPort)?] {
        var connections: [(any StreamedPort)?] = []
        for (i, port) in ports.enumerated() {
            let data = UInt8(clamping: 2 * i)
            send(data, WebSocketChannels.portPrefix(port), writer)
            send(data + 1, WebSocketChannels.portPrefix(port), writer)
            do {
                let c = try await runtime.dial(pod: podID, port: port)
                connections.append(c)
                open.value = (open.value ?? []) + [c]
                group.addTask { await relay(c, channel: data, writer: writer) }
            } catch {
                let reason = error.message
                let text = "error forwarding port \(port) to pod \(podID), uid : \(reason)"
                send(data + 1, Array(text.utf8), writer)
                connections.append(nil)
            }
        }
        return connections
    }

    /// Reads the client until it closes: answers pings and passes each data channel's bytes (or
    /// half-close) to its port's connection.
    private func readLoop(
        _ inbound: NIOAsyncChannelInboundStream<WebSocketFrame>, connections: [(any StreamedPort)?],
        writer: FrameWriter<WebSocketFrame>
    ) async throws {
        for try await frame in inbound {
            activity.touch()
            switch frame.opcode {
            case .ping:
                writer.enqueue(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData))
            case .connectionClose:
                break
            case .binary:
                let bytes = frame.unmaskedBytes
                // [255, ch]: the client sends nothing more on data channel ch (half-close).
                if bytes.count == 2, bytes[0] == 255, bytes[1] % 2 == 0,
                    Int(bytes[1] / 2) < connections.count
                {
                    await connections[Int(bytes[1] / 2)]?.closeWrite()
                    continue
                }
                guard let channel = bytes.first, channel % 2 == 0, Int(channel / 2) < connections.count,
                    let c = connections[Int(channel / 2)]
                else { continue }
                do {
                    try await c.write(Array(bytes.dropFirst()))
                } catch {
                    await c.end()
                }
            default:
                continue
            }
            if frame.opcode == .connectionClose { break }
        }
    }

    /// Closes the session normally: a close frame, then the writer ends.
    private func endSession(_ writer: FrameWriter<WebSocketFrame>) {
        var data = ByteBuffer()
        data.write(webSocketErrorCode: .normalClosure)
        writer.enqueue(WebSocketFrame(fin: true, opcode: .connectionClose, data: data))
        writer.finish()
    }

    private func send(
        _ channel: UInt8, _ bytes: [UInt8], _ writer: FrameWriter<WebSocketFrame>,
        written: (@Sendable () -> Void)? = nil
    ) {
        writer.enqueue(
            WebSocketFrame(fin: true, opcode: .binary, data: ByteBuffer(bytes: [channel] + bytes)), written: written)
    }

    private func relay(_ c: any StreamedPort, channel: UInt8, writer: FrameWriter<WebSocketFrame>) async {
        for await event in c.events {
            switch event {
            case .data(let bytes):
                send(channel, bytes, writer) { c.delivered(bytes.count) }
            case .closed(let message):
                if !message.isEmpty { send(channel + 1, Array(message.utf8), writer) }
            }
        }
        // The pod's side ended; WebSocket has no half-close, so the session ends (as the kubelet's).
        endSession(writer)
    }
}
