/// The versions of Kubernetes' streaming protocols a client may ask for, and what each one changes:
/// how the result is reported (JSON status from v4), whether the terminal can be resized (v3), and
/// whether a channel can be closed on its own (WebSocket v5). Negotiated from the client's list in
/// its order of preference, as the kubelet's server does.
public enum StreamProtocol: String, Sendable, CaseIterable, Equatable {
    case v5 = "v5.channel.k8s.io"
    case v4 = "v4.channel.k8s.io"
    case v4Base64 = "v4.base64.channel.k8s.io"
    case v3 = "v3.channel.k8s.io"
    case v2 = "v2.channel.k8s.io"
    case v1 = "channel.k8s.io"
    case v1Base64 = "base64.channel.k8s.io"
    case portForward = "portforward.k8s.io"

    /// What exec and attach accept over SPDY (`X-Stream-Protocol-Version`), best first.
    public static let spdyRemoteCommand: [StreamProtocol] = [.v4, .v3, .v2, .v1]
    /// What exec and attach accept over WebSocket (`Sec-WebSocket-Protocol`).
    public static let webSocketRemoteCommand: [StreamProtocol] = [.v5, .v4, .v4Base64, .v1, .v1Base64]
    /// What port-forward accepts over WebSocket (channel pairs per port).
    public static let webSocketPortForward: [StreamProtocol] = [.v4, .v4Base64]

    /// The result is a JSON status (metav1.Status) on the error stream, not plain text.
    public var reportsJSONStatus: Bool { [.v5, .v4, .v4Base64].contains(self) }
    /// The client may send terminal sizes (a resize stream or channel 4).
    public var supportsResize: Bool { [.v5, .v4, .v4Base64, .v3].contains(self) }
    /// WebSocket messages `[255, channel]` close one channel (stdin EOF).
    public var supportsChannelClose: Bool { self == .v5 }
    /// WebSocket messages are text: an ASCII channel digit and base64 data.
    public var isBase64: Bool { self == .v4Base64 || self == .v1Base64 }

    /// The first protocol the client offers that the server supports. `offered` is the header's
    /// values (several headers, or one comma-separated list); nil when none matches.
    public static func negotiate(offered: [String], supported: [StreamProtocol]) -> StreamProtocol? {
        let names = offered.flatMap { $0.split(separator: ",") }.map(\.trimmingSpaces)
        for name in names {
            if let p = StreamProtocol(rawValue: name), supported.contains(p) { return p }
        }
        return nil
    }
}

extension StringProtocol {
    /// Without leading and trailing spaces and tabs (HTTP header values).
    var trimmingSpaces: String {
        var s = Substring(self)
        while s.first == " " || s.first == "\t" { s.removeFirst() }
        while s.last == " " || s.last == "\t" { s.removeLast() }
        return String(s)
    }
}
