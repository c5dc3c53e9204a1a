import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket

/// The client side of a CRI streaming URL over WebSocket (RFC 6455, the kubelet's channel
/// protocols): connects, upgrades with the given subprotocol, and hands back the frame channel.
/// Frames this side sends are masked, as a client's must be.
enum StreamingClient {
    enum Upgrade: Sendable {
        case webSocket(NIOAsyncChannel<WebSocketFrame, WebSocketFrame>)
        case refused
    }

    static func connect(_ urlString: String, subprotocol: String) async throws
        -> NIOAsyncChannel<WebSocketFrame, WebSocketFrame>
    {
        guard let url = URL(string: urlString), url.scheme == "http", let host = url.host, let port = url.port else {
            throw CLIError("the runtime returned a streaming URL this client cannot use: \(urlString)")
        }
        let path = url.path + (url.query.map { "?" + $0 } ?? "")
        let upgrade: EventLoopFuture<Upgrade> = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connect(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let upgrader = NIOTypedWebSocketClientUpgrader<Upgrade>(maxFrameSize: 1 << 24) { channel, _ in
                        channel.eventLoop.makeCompletedFuture {
                            .webSocket(try NIOAsyncChannel(wrappingChannelSynchronously: channel))
                        }
                    }
                    var headers = HTTPHeaders()
                    headers.add(name: "Host", value: "\(host):\(port)")
                    headers.add(name: "Sec-WebSocket-Protocol", value: subprotocol)
                    let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: path, headers: headers)
                    let configuration = NIOTypedHTTPClientUpgradeConfiguration<Upgrade>(
                        upgradeRequestHead: head, upgraders: [upgrader],
                        notUpgradingCompletionHandler: { channel in
                            channel.eventLoop.makeCompletedFuture { .refused }
                        })
                    var pipeline = NIOUpgradableHTTPClientPipelineConfiguration(upgradeConfiguration: configuration)
                    // The server's first frames may share a packet with its 101: keep them.
                    pipeline.leftOverBytesStrategy = .forwardBytes
                    return try channel.pipeline.syncOperations.configureUpgradableHTTPClientPipeline(
                        configuration: pipeline)
                }
            }
        switch try await upgrade.get() {
        case .webSocket(let channel): return channel
        case .refused: throw CLIError("the streaming server refused the upgrade to WebSocket (\(subprotocol))")
        }
    }

    /// The answer to a server's ping.
    static func pong(_ ping: WebSocketFrame) -> WebSocketFrame {
        WebSocketFrame(fin: true, opcode: .pong, maskKey: .random(), data: ping.unmaskedData)
    }

    /// A masked binary frame: channel byte, then data.
    static func frame(channel: UInt8, _ data: some Collection<UInt8>) -> WebSocketFrame {
        var buffer = ByteBuffer()
        buffer.writeInteger(channel)
        buffer.writeBytes(data)
        return WebSocketFrame(fin: true, opcode: .binary, maskKey: .random(), data: buffer)
    }
}

/// Reads a file descriptor on a thread of its own (stdin, a terminal) into an async stream of chunks.
enum DescriptorReader {
    static func chunks(_ fd: Int32) -> AsyncStream<[UInt8]> {
        AsyncStream { continuation in
            Thread.detachNewThread {
                var buffer = [UInt8](repeating: 0, count: 32 << 10)
                while true {
                    let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                    if n < 0 && errno == EINTR { continue }
                    guard n > 0 else { break }
                    continuation.yield(Array(buffer[0..<n]))
                }
                continuation.finish()
            }
        }
    }
}

/// The local terminal in raw mode for an interactive session, restored when done; its size.
final class RawTerminal {
    private var saved = termios()
    private let fd: Int32

    init?(_ fd: Int32 = 0) {
        guard isatty(fd) == 1, tcgetattr(fd, &saved) == 0 else { return nil }
        self.fd = fd
        var raw = saved
        cfmakeraw(&raw)
        tcsetattr(fd, TCSANOW, &raw)
    }

    func restore() { tcsetattr(fd, TCSANOW, &saved) }

    static func size(_ fd: Int32 = 1) -> (width: UInt16, height: UInt16)? {
        var ws = winsize()
        guard ioctl(fd, UInt(TIOCGWINSZ), &ws) == 0, ws.ws_col > 0 else { return nil }
        return (ws.ws_col, ws.ws_row)
    }
}
