import Foundation

/// The channel framing of Kubernetes' WebSocket streaming: every message is a channel number and
/// data. Binary protocols put the channel in the first byte; base64 ones (text frames) put it as an
/// ASCII digit before base64 data. Channels: 0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize (for
/// port-forward, 2i data and 2i+1 error of the i-th port). In v5, `[255, ch]` closes channel `ch`.
public enum WebSocketChannels {
    public static let stdin: UInt8 = 0
    public static let stdout: UInt8 = 1
    public static let stderr: UInt8 = 2
    public static let error: UInt8 = 3
    public static let resize: UInt8 = 4
    static let closeSignal: UInt8 = 255

    /// One message as the peer meant it.
    public enum Message: Sendable, Equatable {
        case data(channel: UInt8, [UInt8])
        /// The peer will send nothing more on this channel (stdin EOF).
        case close(channel: UInt8)
    }

    /// The message body to send, and whether it goes in a text frame (base64 protocols).
    public static func encode(_ message: Message, protocol p: StreamProtocol) -> (text: Bool, bytes: [UInt8]) {
        switch message {
        case .close(let channel):
            return (false, [closeSignal, channel])
        case .data(let channel, let data):
            guard p.isBase64 else { return (false, [channel] + data) }
            return (true, [UInt8(ascii: "0") + channel] + Array(Data(data).base64EncodedString().utf8))
        }
    }

    /// What a received message says; nil for messages to ignore (empty, unknown channel digit, bad
    /// base64, or a close signal in a protocol without one), as the kubelet's server ignores them.
    public static func decode(_ bytes: [UInt8], protocol p: StreamProtocol) -> Message? {
        guard let first = bytes.first else { return nil }
        if p.supportsChannelClose && first == closeSignal {
            return bytes.count == 2 ? .close(channel: bytes[1]) : nil
        }
        guard p.isBase64 else { return .data(channel: first, Array(bytes.dropFirst())) }
        guard first >= UInt8(ascii: "0"), first <= UInt8(ascii: "9"),
            let data = Data(base64Encoded: Data(bytes.dropFirst()))
        else { return nil }
        return .data(channel: first - UInt8(ascii: "0"), [UInt8](data))
    }

    /// Port-forward over WebSocket: the first message on each of a port's two channels is the port,
    /// two bytes little-endian.
    public static func portPrefix(_ port: UInt16) -> [UInt8] { [UInt8(port & 0xff), UInt8(port >> 8)] }
}
