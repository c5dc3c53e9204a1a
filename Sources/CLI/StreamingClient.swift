import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOWebSocket

/// The client side of a CRI streaming URL: the connection (TCP, or TLS for `https`), then either the
/// WebSocket upgrade (RFC 6455, the kubelet's channel protocols; frames this side sends are masked,
/// as a client's must be) or the SPDY/3.1 upgrade, after which the raw bytes are SPDY frames.
///
/// A streaming server's certificate is not verified, as crictl and the kubelet's clients do not
/// verify it: the URL comes from the CRI endpoint the user already trusts, and its token is
/// single-use and short-lived.
enum StreamingClient {
    enum Upgrade: Sendable {
        case webSocket(NIOAsyncChannel<WebSocketFrame, WebSocketFrame>)
        case refused
    }

    /// The parts of a streaming URL a client connects with.
    struct Target {
        var host: String
        var port: Int
        var path: String
        var tls: NIOSSLContext?

        init(_ urlString: String) throws {
            guard let url = URL(string: urlString), let scheme = url.scheme, scheme == "http" || scheme == "https",
                let host = url.host
            else {
                throw CLIError("the runtime returned a streaming URL this client cannot use: \(urlString)")
            }
            self.host = host
            port = url.port ?? (scheme == "https" ? 443 : 80)
            path = url.path + (url.query.map { "?" + $0 } ?? "")
            if scheme == "https" {
                var configuration = TLSConfiguration.makeClientConfiguration()
                configuration.certificateVerification = .none
                tls = try NIOSSLContext(configuration: configuration)
            }
        }

        /// TLS first when the URL is https (no SNI for an address).
        func addTLS(_ channel: Channel) throws {
            guard let tls else { return }
            let isAddress = host.contains(":") || host.allSatisfy { $0.isNumber || $0 == "." }
            try channel.pipeline.syncOperations.addHandler(
                NIOSSLClientHandler(context: tls, serverHostname: isAddress ? nil : host))
        }
    }

    static func connect(_ urlString: String, subprotocol: String) async throws
        -> NIOAsyncChannel<WebSocketFrame, WebSocketFrame>
    {
        let target = try Target(urlString)
        let (host, port) = (target.host, target.port)
        let upgrade: EventLoopFuture<Upgrade> = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connect(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try target.addTLS(channel)
                    let upgrader = NIOTypedWebSocketClientUpgrader<Upgrade>(maxFrameSize: 1 << 24) { channel, _ in
                        channel.eventLoop.makeCompletedFuture {
                            .webSocket(try NIOAsyncChannel(wrappingChannelSynchronously: channel))
                        }
                    }
                    var headers = HTTPHeaders()
                    headers.add(name: "Host", value: "\(host):\(port)")
                    headers.add(name: "Sec-WebSocket-Protocol", value: subprotocol)
                    let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: target.path, headers: headers)
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

    /// Connects for a SPDY session; `upgradeSPDY` then asks for the upgrade on it.
    static func connectSPDY(_ urlString: String) async throws -> (
        channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>, target: Target
    ) {
        let target = try Target(urlString)
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connect(host: target.host, port: target.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try target.addTLS(channel)
                    return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        return (channel, target)
    }

    /// Sends `Upgrade: SPDY/3.1` with `protocolVersion` and reads the answer; returns the bytes
    /// that came right after the server's 101 (SPDY frames already).
    static func upgradeSPDY(
        _ target: Target, protocolVersion: String,
        _ inbound: inout NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator,
        _ outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    ) async throws -> [UInt8] {
        let request =
            "POST \(target.path) HTTP/1.1\r\nHost: \(target.host):\(target.port)\r\nConnection: Upgrade\r\n"
            + "Upgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: \(protocolVersion)\r\nContent-Length: 0\r\n\r\n"
        try await outbound.write(ByteBuffer(string: request))
        var head: [UInt8] = []
        while true {
            guard let buffer = try await inbound.next() else {
                throw CLIError("the streaming server closed the connection before answering the upgrade")
            }
            head += buffer.readableBytesView
            if let end = head.firstRange(of: Array("\r\n\r\n".utf8)) {
                let text = String(decoding: head[..<end.lowerBound], as: UTF8.self)
                guard text.hasPrefix("HTTP/1.1 101") else {
                    let status = text.split(separator: "\r\n").first.map(String.init) ?? text
                    let body = String(decoding: head[end.upperBound...], as: UTF8.self)
                    throw CLIError("the streaming server refused the upgrade to SPDY: \(status) \(body)")
                }
                return Array(head[end.upperBound...])
            }
            guard head.count < 16 << 10 else { throw CLIError("the streaming server's answer has no end") }
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
