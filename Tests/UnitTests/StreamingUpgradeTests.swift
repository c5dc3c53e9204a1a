import Testing

@testable import Streaming

/// What the streaming server answers before any stream flows, as the kubelet's server does.
@Suite struct StreamingUpgradeTests {
    typealias H = StreamingUpgrade.Header
    let spdy = [H("Connection", "Upgrade"), H("Upgrade", "SPDY/3.1")]
    let ws = [H("Connection", "Upgrade"), H("Upgrade", "websocket"), H("Sec-WebSocket-Version", "13")]

    @Test func routesAreKindAndToken() {
        #expect(StreamingUpgrade.route("/exec/abc123")! == (.exec, "abc123"))
        #expect(StreamingUpgrade.route("/portforward/x_y-z?port=80")! == (.portforward, "x_y-z"))
        for bad in ["/exec/", "/exec", "/shell/abc", "/exec/abc/more", "exec/abc", "/exec/a%2f", "/"] {
            #expect(StreamingUpgrade.route(bad) == nil, "\(bad)")
        }
    }

    @Test func spdyNegotiatesTheClientsBestCommonVersion() {
        // client-go sends one header per version, v5 first; the answer is v4.
        let offered = ["v5.channel.k8s.io", "v4.channel.k8s.io", "v3.channel.k8s.io"].map {
            H("X-Stream-Protocol-Version", $0)
        }
        guard
            case .spdy(.v4, let headers) = StreamingUpgrade.decide(kind: .exec, method: "POST", headers: spdy + offered)
        else {
            Issue.record("not v4")
            return
        }
        #expect(
            headers.contains(H("X-Stream-Protocol-Version", "v4.channel.k8s.io"))
                && headers.contains(H("Upgrade", "SPDY/3.1")))
        let pf = StreamingUpgrade.decide(
            kind: .portforward, method: "GET", headers: spdy + [H("x-stream-protocol-version", "portforward.k8s.io")])
        guard case .spdy(.portForward, _) = pf else {
            Issue.record("port-forward: \(pf)")
            return
        }
    }

    @Test func refusalsAreTheKubelets() {
        func status(_ d: StreamingUpgrade.Decision) -> Int? {
            if case .refuse(let s, _, _) = d { return s }
            return nil
        }
        #expect(status(StreamingUpgrade.decide(kind: .exec, method: "PUT", headers: spdy)) == 405)
        #expect(status(StreamingUpgrade.decide(kind: .exec, method: "GET", headers: [])) == 400, "not an upgrade")
        #expect(status(StreamingUpgrade.decide(kind: .exec, method: "GET", headers: spdy)) == 400, "no version header")
        let none = StreamingUpgrade.decide(
            kind: .exec, method: "GET", headers: spdy + [H("X-Stream-Protocol-Version", "v9")])
        guard case .refuse(403, _, let headers) = none else {
            Issue.record("\(none)")
            return
        }
        #expect(headers.map(\.value) == StreamProtocol.spdyRemoteCommand.map(\.rawValue))
        #expect(
            status(
                StreamingUpgrade.decide(kind: .exec, method: "GET", headers: ws + [H("Sec-WebSocket-Protocol", "v9")]))
                == 403)
        #expect(
            status(
                StreamingUpgrade.decide(
                    kind: .exec, method: "GET", headers: [H("Connection", "Upgrade"), H("Upgrade", "websocket")]))
                == 400)
    }

    @Test func webSocketTakesV5OrTheEmptySubprotocol() {
        let v5 = StreamingUpgrade.decide(
            kind: .exec, method: "GET", headers: ws + [H("Sec-WebSocket-Protocol", "v5.channel.k8s.io")])
        #expect(v5 == .webSocket(.v5))
        #expect(StreamingUpgrade.decide(kind: .attach, method: "GET", headers: ws) == .webSocket(nil))
        let b64 = StreamingUpgrade.decide(
            kind: .portforward, method: "GET", headers: ws + [H("Sec-WebSocket-Protocol", "v4.base64.channel.k8s.io")])
        #expect(b64 == .webSocket(.v4Base64))
    }
}
