import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

@testable import Streaming

/// The HTTP side of the streaming server, on an in-memory channel: tokens are single use and bound
/// to their route, refusals are the kubelet's, and the WebSocket accept value is RFC 6455's.
@Suite struct StreamingHTTPTests {
    let request = StreamingRequest.portForward(podID: "pod-a", ports: [80])

    /// Feeds one raw request through the server's HTTP pipeline; returns the response text and the
    /// upgrade result.
    func serve(_ raw: String, tokens: StreamingTokens<StreamingRequest>) throws -> (String, UpgradedConnection?) {
        let channel = EmbeddedChannel()
        let promise = channel.eventLoop.makePromise(of: UpgradedConnection.self)
        let sync = channel.pipeline.syncOperations
        try sync.addHandler(HTTPResponseEncoder())
        try sync.addHandler(ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes)))
        try sync.addHandler(StreamingHTTPHandler(tokens: tokens, promise: promise, maxFrame: 1 << 20))
        try channel.writeInbound(ByteBuffer(string: raw))
        var response = ""
        while let out = try channel.readOutbound(as: ByteBuffer.self) { response += String(buffer: out) }
        var result: UpgradedConnection?
        promise.futureResult.whenSuccess { result = $0 }
        _ = try? channel.finish()
        return (response, result)
    }

    @Test func unknownUsedAndMisroutedTokensAre404() throws {
        let tokens = StreamingTokens<StreamingRequest>()
        let (unknown, _) = try serve("GET /portforward/0123abcd HTTP/1.1\r\nHost: x\r\n\r\n", tokens: tokens)
        #expect(unknown.hasPrefix("HTTP/1.1 404"))
        // A port-forward token on the exec route: not found, and spent.
        let token = try tokens.insert(request)
        let (misrouted, _) = try serve("GET /exec/\(token) HTTP/1.1\r\nHost: x\r\n\r\n", tokens: tokens)
        #expect(misrouted.hasPrefix("HTTP/1.1 404"))
        let (again, _) = try serve("GET /portforward/\(token) HTTP/1.1\r\nHost: x\r\n\r\n", tokens: tokens)
        #expect(again.hasPrefix("HTTP/1.1 404"))
    }

    @Test func aRequestWithoutUpgradeIs400AndSpendsItsToken() throws {
        let tokens = StreamingTokens<StreamingRequest>()
        let token = try tokens.insert(request)
        let (refused, result) = try serve("GET /portforward/\(token) HTTP/1.1\r\nHost: x\r\n\r\n", tokens: tokens)
        #expect(refused.hasPrefix("HTTP/1.1 400"))
        #expect(refused.contains("missing upgrade headers"))
        if case .refused? = result {} else { Issue.record("expected a refusal, got \(String(describing: result))") }
        #expect(tokens.count == 0)
    }

    @Test func aSPDYUpgradeAnswers101WithTheChosenVersion() throws {
        let tokens = StreamingTokens<StreamingRequest>()
        let token = try tokens.insert(request)
        let (response, result) = try serve(
            "POST /portforward/\(token) HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
                + "X-Stream-Protocol-Version: portforward.k8s.io\r\n\r\n", tokens: tokens)
        #expect(response.hasPrefix("HTTP/1.1 101"))
        #expect(response.contains("X-Stream-Protocol-Version: portforward.k8s.io"))
        if case .spdy(_, let r, let version)? = result {
            #expect(r == request && version == .portForward)
        } else {
            Issue.record("expected a SPDY session, got \(String(describing: result))")
        }
    }

    @Test func webSocketAcceptValueIsRFC6455s() {
        #expect(StreamingHTTPHandler.acceptValue("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    }
}
