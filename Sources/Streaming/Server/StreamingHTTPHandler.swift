import Crypto
import Foundation
import NIOCore
import NIOHTTP1
import NIOWebSocket

/// A streaming connection once its HTTP request is answered: upgraded to SPDY (raw bytes) or
/// WebSocket (frames), with the request its token stood for, or refused (the answer was written).
enum UpgradedConnection: Sendable {
    case spdy(NIOAsyncChannel<ByteBuffer, ByteBuffer>, StreamingRequest, StreamProtocol)
    case webSocket(NIOAsyncChannel<WebSocketFrame, WebSocketFrame>, StreamingRequest, StreamProtocol?)
    case refused
}

/// The HTTP/1.1 part of a streaming connection: reads one request, takes its token (single use),
/// applies `StreamingUpgrade.decide`, writes the answer, and on an upgrade swaps the HTTP codec for
/// the session's (none for SPDY, the WebSocket frame codec) and hands the channel on, wrapped for
/// async use. Unknown, used or expired tokens are 404, as the kubelet's server answers.
final class StreamingHTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let tokens: StreamingTokens<StreamingRequest>
    private let promise: EventLoopPromise<UpgradedConnection>
    private let maxFrame: Int
    private var head: HTTPRequestHead?
    private var answered = false
    private var completed = false

    init(tokens: StreamingTokens<StreamingRequest>, promise: EventLoopPromise<UpgradedConnection>, maxFrame: Int) {
        self.tokens = tokens
        self.promise = promise
        self.maxFrame = maxFrame
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !answered else { return }
        switch unwrapInboundIn(data) {
        case .head(let h): head = h
        case .body: break  // a streaming request has no body worth reading
        case .end:
            answered = true
            guard let head else { return refuse(context, 400, "no request line\n", []) }
            answer(context, head)
        }
    }

    private func answer(_ context: ChannelHandlerContext, _ head: HTTPRequestHead) {
        guard let (kind, token) = StreamingUpgrade.route(head.uri) else {
            return refuse(context, 404, "404 page not found\n", [])
        }
        guard let request = tokens.take(token), request.kind == kind else {
            return refuse(context, 404, "404 page not found\n", [])
        }
        let headers = head.headers.map { StreamingUpgrade.Header($0.name, $0.value) }
        switch StreamingUpgrade.decide(kind: kind, method: head.method.rawValue, headers: headers) {
        case .refuse(let status, let body, let extra):
            refuse(context, status, body, extra)
        case .spdy(let version, let responseHeaders):
            var h = HTTPHeaders()
            for header in responseHeaders { h.add(name: header.name, value: header.value) }
            upgrade(context, headers: h) { channel in
                .spdy(try NIOAsyncChannel(wrappingChannelSynchronously: channel), request, version)
            }
        case .webSocket(let version):
            guard let key = head.headers.first(name: "sec-websocket-key"), !key.isEmpty else {
                return refuse(context, 400, "missing Sec-WebSocket-Key\n", [])
            }
            var h = HTTPHeaders()
            h.add(name: "Upgrade", value: "websocket")
            h.add(name: "Connection", value: "Upgrade")
            h.add(name: "Sec-WebSocket-Accept", value: Self.acceptValue(key))
            if let version { h.add(name: "Sec-WebSocket-Protocol", value: version.rawValue) }
            let maxFrame = self.maxFrame
            upgrade(context, headers: h) { channel in
                let sync = channel.pipeline.syncOperations
                try sync.addHandler(WebSocketFrameEncoder())
                try sync.addHandler(ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: maxFrame)))
                try sync.addHandler(WebSocketProtocolErrorHandler())
                try sync.addHandler(
                    NIOWebSocketFrameAggregator(
                        minNonFinalFragmentSize: 0, maxAccumulatedFrameCount: 64, maxAccumulatedFrameSize: maxFrame))
                return .webSocket(try NIOAsyncChannel(wrappingChannelSynchronously: channel), request, version)
            }
        }
    }

    /// RFC 6455: base64(SHA-1(key + GUID)).
    static func acceptValue(_ key: String) -> String {
        let digest = Insecure.SHA1.hash(data: Data((key.trimmingSpaces + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").utf8))
        return Data(digest).base64EncodedString()
    }

    private func upgrade(
        _ context: ChannelHandlerContext, headers: HTTPHeaders,
        session: @escaping (Channel) throws -> UpgradedConnection
    ) {
        let response = HTTPResponseHead(version: .http1_1, status: .switchingProtocols, headers: headers)
        context.write(wrapOutboundOut(.head(response)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        let channel = context.channel
        do {
            let sync = channel.pipeline.syncOperations
            // The encoder goes first; the decoder goes last, handing what it read past the request
            // (the client's first frames) to the session's handlers.
            sync.removeHandler(try sync.handler(type: HTTPResponseEncoder.self), promise: nil)
            let decoder = try sync.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self)
            complete(try session(channel))
            context.pipeline.removeHandler(context: context, promise: nil)
            // The frames it hands on arrive as a read without its read-complete, and the session's
            // async channel delivers reads at a read-complete: without one they would wait for the
            // client's next packet (a client that sent its first frames with the request, then waits).
            let removed = channel.eventLoop.makePromise(of: Void.self)
            removed.futureResult.whenSuccess { channel.pipeline.fireChannelReadComplete() }
            sync.removeHandler(decoder, promise: removed)
        } catch {
            channel.close(promise: nil)
            complete(.refused)
        }
    }

    private func refuse(
        _ context: ChannelHandlerContext, _ status: Int, _ body: String, _ extra: [StreamingUpgrade.Header]
    ) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
        headers.add(name: "Content-Length", value: "\(body.utf8.count)")
        headers.add(name: "Connection", value: "close")
        for header in extra { headers.add(name: header.name, value: header.value) }
        let head = HTTPResponseHead(version: .http1_1, status: .init(statusCode: status), headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: body)))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
            context.close(promise: nil)
        }
        complete(.refused)
    }

    private func complete(_ result: UpgradedConnection) {
        guard !completed else { return }
        completed = true
        promise.succeed(result)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // A malformed request: 400, as the kubelet's HTTP server answers one.
        if !answered {
            answered = true
            refuse(context, 400, "bad request\n", [])
        } else {
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        complete(.refused)
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        complete(.refused)  // removed without an answer (the channel closed during setup)
    }
}
