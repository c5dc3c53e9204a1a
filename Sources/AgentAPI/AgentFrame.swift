import SwiftProtobuf

/// The agent protocol version spoken by this build, carried in `Hello` and `HealthResponse`.
public let agentAPIVersion: UInt32 = 4

/// Owns the wire framing of the agent channel: a 4-byte big-endian length, then one `Envelope`.
/// Both sides treat the peer as untrusted: a frame longer than `maxFrameSize` is an error.
public enum AgentFrame {
    public static let maxFrameSize = 16 << 20

    public enum DecodeError: Error, Equatable, CustomStringConvertible {
        case frameTooLarge(Int)
        case malformed(String)
        public var description: String {
            switch self {
            case .frameTooLarge(let n): "agent frame of \(n) bytes exceeds the \(AgentFrame.maxFrameSize)-byte limit"
            case .malformed(let why): "malformed agent frame: \(why)"
            }
        }
    }

    /// Serializes an envelope with its length prefix.
    public static func encode(_ envelope: Cocoon_Agent_V4_Envelope) throws -> [UInt8] {
        let body: [UInt8] = try envelope.serializedBytes()
        let n = UInt32(body.count)
        var out: [UInt8] = [UInt8(n >> 24 & 0xff), UInt8(n >> 16 & 0xff), UInt8(n >> 8 & 0xff), UInt8(n & 0xff)]
        out.append(contentsOf: body)
        return out
    }
}

/// Accumulates bytes from a stream and yields whole envelopes.
public struct AgentFrameDecoder: Sendable {
    private var buffer: [UInt8] = []
    private var start = 0

    public init() {}

    public mutating func append<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        buffer.append(contentsOf: bytes)
    }

    /// Drops any partial frame, e.g. when a new session starts on the same stream.
    public mutating func reset() {
        buffer.removeAll(keepingCapacity: true)
        start = 0
    }

    /// The next complete envelope, or nil when more bytes are needed.
    public mutating func next() throws -> Cocoon_Agent_V4_Envelope? {
        let available = buffer.count - start
        guard available >= 4 else {
            compact()
            return nil
        }
        let n =
            Int(buffer[start]) << 24 | Int(buffer[start + 1]) << 16 | Int(buffer[start + 2]) << 8
            | Int(buffer[start + 3])
        guard n <= AgentFrame.maxFrameSize else { throw AgentFrame.DecodeError.frameTooLarge(n) }
        guard available >= 4 + n else {
            compact()
            return nil
        }
        let body = buffer[(start + 4)..<(start + 4 + n)]
        start += 4 + n
        do {
            return try Cocoon_Agent_V4_Envelope(serializedBytes: Array(body))
        } catch {
            throw AgentFrame.DecodeError.malformed("\(error)")
        }
    }

    private mutating func compact() {
        if start > 0 {
            buffer.removeFirst(start)
            start = 0
        }
    }
}
