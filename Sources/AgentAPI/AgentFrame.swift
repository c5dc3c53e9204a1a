import SwiftProtobuf

/// The agent protocol version spoken by this build, carried in `Hello` and `HealthResponse`.
public let agentAPIVersion: UInt32 = 9

/// The session binding of the agent channel: the host picks `idBytes` random bytes (the system's
/// CSPRNG) and sends them with its token; every later host frame carries them in `Envelope.session`.
/// A session opens with `marker`, then the Authenticate frame: a guest that lost the frame
/// boundary (a host gone mid-frame, the bytes of a peer it refused) skips to the marker instead of
/// reading a new host's frames at the wrong offsets. Read as a length, the marker's first four bytes
/// exceed `AgentFrame.maxFrameSize`, so a guest still reading frames fails on it and looks for it.
public enum AgentSession {
    public static let idBytes = 16
    public static let marker: [UInt8] = Array("\u{7f}cocoon-agent-session\n".utf8)
}

/// Owns the wire framing of the agent channel: a 4-byte big-endian length, then one `Envelope` from
/// the host or one `GuestEnvelope` from the guest. Both sides treat the peer as untrusted: a frame
/// longer than `maxFrameSize` (`maxGuestFrameSize` from a guest) is an error.
public enum AgentFrame {
    public static let maxFrameSize = 16 << 20
    /// The most a guest may send in one frame (its largest legitimate one is a 64 KiB chunk of
    /// output): the host holds at most this much of a pod's bytes before it decodes them.
    public static let maxGuestFrameSize = 1 << 20

    public enum DecodeError: Error, Equatable, CustomStringConvertible {
        case frameTooLarge(Int)
        case malformed(String)
        /// A frame with fields its sender never sends (a guest's request or session id).
        case unexpectedFields
        public var description: String {
            switch self {
            case .frameTooLarge(let n): "agent frame of \(n) bytes exceeds its size limit"
            case .malformed(let why): "malformed agent frame: \(why)"
            case .unexpectedFields: "agent frame with fields its sender may not send"
            }
        }
    }

    /// Serializes an envelope with its length prefix. A frame the peer would refuse as too large is
    /// refused here (`frameTooLarge`): sent, it would end the session for every call on it.
    public static func encode(_ envelope: some SwiftProtobuf.Message) throws -> [UInt8] {
        let body: [UInt8] = try envelope.serializedBytes()
        guard body.count <= maxFrameSize else { throw DecodeError.frameTooLarge(body.count) }
        let n = UInt32(body.count)
        var out: [UInt8] = [UInt8(n >> 24 & 0xff), UInt8(n >> 16 & 0xff), UInt8(n >> 8 & 0xff), UInt8(n & 0xff)]
        out.append(contentsOf: body)
        return out
    }
}

/// Accumulates bytes from a stream and yields whole envelopes. The buffer is kept between reads
/// and read into directly (`fill`): no zeroing or copying per read, and a frame is parsed where it
/// lies.
public struct AgentFrameDecoder: Sendable {
    /// Storage; the bytes not yet decoded are `start..<end`.
    private var buffer: [UInt8] = []
    private var start = 0
    private var end = 0
    /// Frames longer than this are an error (`AgentFrame.maxGuestFrameSize` for what a guest sends).
    public let maxFrame: Int

    public init(maxFrame: Int = AgentFrame.maxFrameSize) { self.maxFrame = maxFrame }

    /// Bytes received and not yet decoded.
    public var buffered: Int { end - start }

    public mutating func append<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        _ = fill(atMost: bytes.count) { free in
            free.copyBytes(from: bytes)
            return bytes.count
        }
    }

    /// Lets `read` write up to `atMost` bytes straight into the buffer; returns what `read`
    /// returned (a count, or 0 or less for EOF and errors, which add nothing).
    public mutating func fill(atMost: Int, _ read: (UnsafeMutableRawBufferPointer) -> Int) -> Int {
        reserve(atMost)
        let n = buffer.withUnsafeMutableBytes { raw in
            read(UnsafeMutableRawBufferPointer(rebasing: raw[end..<(end + atMost)]))
        }
        if n > 0 { end += min(n, atMost) }
        return n
    }

    /// Makes room for `count` more bytes after `end`: moves the undecoded bytes to the front when
    /// that is enough, grows the storage otherwise (zeroed once, then reused).
    private mutating func reserve(_ count: Int) {
        if buffer.count - end >= count { return }
        if start > 0 {
            buffer.withUnsafeMutableBytes { raw in
                guard let base = raw.baseAddress else { return }
                (base).copyMemory(from: base + start, byteCount: end - start)
            }
            end -= start
            start = 0
        }
        if buffer.count - end < count {
            buffer.append(contentsOf: repeatElement(0, count: max(count - (buffer.count - end), 64 << 10)))
        }
    }

    /// Drops the bytes up to and including the first `marker`; true when it was there. Without it,
    /// only the last `marker.count - 1` bytes are kept (the start of a marker split across reads).
    public mutating func skip(past marker: [UInt8]) -> Bool {
        guard !marker.isEmpty else { return true }
        let found: Int? = buffer.withUnsafeBufferPointer { b in
            var i = start
            while i + marker.count <= end {
                if b[i] == marker[0] && marker.indices.allSatisfy({ b[i + $0] == marker[$0] }) { return i }
                i += 1
            }
            return nil
        }
        if let found {
            start = found + marker.count
        } else {
            start = max(start, end - (marker.count - 1))
        }
        if start == end {
            start = 0
            end = 0
        }
        return found != nil
    }

    /// Drops any partial frame, e.g. when a new session starts on the same stream.
    public mutating func reset() {
        start = 0
        end = 0
    }

    /// The next complete host envelope, or nil when more bytes are needed.
    public mutating func next() throws -> Cocoon_Agent_V4_Envelope? { try next(as: Cocoon_Agent_V4_Envelope.self) }

    /// The next complete guest envelope, or nil when more bytes are needed. A frame with fields a
    /// guest never sends (a request, a session id: fields of the host's `Envelope`) is an error.
    public mutating func nextFromGuest() throws -> Cocoon_Agent_V4_GuestEnvelope? {
        guard let envelope = try next(as: Cocoon_Agent_V4_GuestEnvelope.self) else { return nil }
        guard envelope.unknownFields.data.isEmpty else { throw AgentFrame.DecodeError.unexpectedFields }
        return envelope
    }

    private mutating func next<M: SwiftProtobuf.Message>(as type: M.Type) throws -> M? {
        let available = end - start
        guard available >= 4 else { return nil }
        let n =
            Int(buffer[start]) << 24 | Int(buffer[start + 1]) << 16 | Int(buffer[start + 2]) << 8
            | Int(buffer[start + 3])
        guard n <= maxFrame else { throw AgentFrame.DecodeError.frameTooLarge(n) }
        guard available >= 4 + n else { return nil }
        let body = buffer[(start + 4)..<(start + 4 + n)]
        start += 4 + n
        if start == end {
            start = 0
            end = 0
        }
        do {
            return try M(serializedBytes: body)
        } catch {
            throw AgentFrame.DecodeError.malformed("\(error)")
        }
    }
}

/// Lets a frame be parsed where it lies in the decoder's buffer.
extension ArraySlice: @retroactive SwiftProtobufContiguousBytes where Element == UInt8 {}
