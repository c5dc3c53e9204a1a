/// What the streaming server answers to an HTTP request before any stream flows: the route
/// (`/exec/TOKEN`, `/attach/TOKEN`, `/portforward/TOKEN`), the kind of upgrade (SPDY/3.1 or
/// WebSocket) and the protocol version both sides speak, or the refusal the kubelet's server gives
/// (400 malformed, 403 no common protocol, 404 unknown route, 405 method). Pure: the HTTP glue
/// applies the decision.
public enum StreamingUpgrade {
    public enum Kind: String, Sendable, Equatable { case exec, attach, portforward }

    public enum Decision: Sendable, Equatable {
        /// Switch to SPDY/3.1 with these 101 response headers.
        case spdy(StreamProtocol, responseHeaders: [Header])
        /// Switch to WebSocket; nil is the empty subprotocol (binary channels, v1 semantics).
        case webSocket(StreamProtocol?)
        case refuse(status: Int, body: String, headers: [Header])
    }

    public struct Header: Sendable, Equatable {
        public var name: String
        public var value: String
        public init(_ name: String, _ value: String) {
            self.name = name
            self.value = value
        }
    }

    /// The kind and token of a streaming URL path; nil when the path is not one (HTTP 404).
    public static func route(_ path: String) -> (kind: Kind, token: String)? {
        let parts = path.split(separator: "?", maxSplits: 1)[0].split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0].isEmpty, let kind = Kind(rawValue: String(parts[1])), !parts[2].isEmpty,
            parts[2].count <= 64,
            parts[2].allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") })
        else { return nil }
        return (kind, String(parts[2]))
    }

    /// The answer to a request for a live token of `kind`. `headers` as received (names in any case).
    public static func decide(kind: Kind, method: String, headers: [Header]) -> Decision {
        guard method == "GET" || method == "POST" else {
            return .refuse(status: 405, body: "method not allowed\n", headers: [])
        }
        func values(_ name: String) -> [String] { headers.filter { $0.name.lowercased() == name }.map(\.value) }
        let upgrade = values("upgrade").joined(separator: ",").lowercased()
        let connection = values("connection").joined(separator: ",").lowercased()
        guard connection.contains("upgrade") else { return missingUpgrade() }
        if upgrade.contains("spdy/3.1") {
            let supported: [StreamProtocol] = kind == .portforward ? [.portForward] : StreamProtocol.spdyRemoteCommand
            let offered = values("x-stream-protocol-version").filter { !$0.trimmingSpaces.isEmpty }
            guard !offered.isEmpty else {
                return .refuse(
                    status: 400,
                    body: "unable to upgrade: header X-Stream-Protocol-Version does not exist in request\n",
                    headers: [])
            }
            guard let chosen = StreamProtocol.negotiate(offered: offered, supported: supported) else {
                return .refuse(
                    status: 403,
                    body: "unable to upgrade: unable to negotiate protocol: client supports \(offered), server accepts "
                        + "\(supported.map(\.rawValue))\n",
                    headers: supported.map { Header("X-Accepted-Stream-Protocol-Versions", $0.rawValue) })
            }
            return .spdy(
                chosen,
                responseHeaders: [
                    Header("Connection", "Upgrade"), Header("Upgrade", "SPDY/3.1"),
                    Header("X-Stream-Protocol-Version", chosen.rawValue),
                ])
        }
        if upgrade.contains("websocket") {
            guard values("sec-websocket-version").first?.trimmingSpaces == "13" else {
                return .refuse(status: 400, body: "unsupported WebSocket version (13 is required)\n", headers: [])
            }
            let offered = values("sec-websocket-protocol").filter { !$0.trimmingSpaces.isEmpty }
            if offered.isEmpty { return .webSocket(nil) }
            let supported =
                kind == .portforward ? StreamProtocol.webSocketPortForward : StreamProtocol.webSocketRemoteCommand
            guard let chosen = StreamProtocol.negotiate(offered: offered, supported: supported) else {
                return .refuse(status: 403, body: "", headers: [])
            }
            return .webSocket(chosen)
        }
        return missingUpgrade()
    }

    private static func missingUpgrade() -> Decision {
        .refuse(
            status: 400,
            body: "unable to upgrade: missing upgrade headers in request "
                + "(Connection: Upgrade and Upgrade: SPDY/3.1 or websocket)\n",
            headers: [])
    }
}
