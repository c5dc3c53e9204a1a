/// Parses the bytes a peer sends on one SPDY/3 session into frames, as they arrive in pieces.
/// Owns the session's incoming header decompression context. Everything from the peer is
/// untrusted: lengths are checked before anything is buffered beyond them, header blocks may not
/// expand past `maxHeaderBlock`, and unknown control frames are skipped, as the protocol says.
public final class SPDYFrameDecoder {
    /// The largest length the 24-bit field can carry.
    public static let maxLength = (1 << 24) - 1

    private let zlib: SPDYZlibStream
    private let maxPayload: Int
    private let maxHeaderBlock: Int
    private var buffer: [UInt8] = []
    private var offset = 0

    /// `maxPayload`: the largest frame accepted (a longer one is an error before its body arrives).
    public init(maxPayload: Int = 1 << 20, maxHeaderBlock: Int = 256 << 10) throws(SPDYProtocolError) {
        do {
            zlib = try SPDYZlibStream(.decompress)
        } catch {
            throw .compression(error.description)
        }
        self.maxPayload = min(maxPayload, Self.maxLength)
        self.maxHeaderBlock = maxHeaderBlock
    }

    public func append(_ bytes: [UInt8]) {
        if offset > 0 && offset == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            offset = 0
        }
        buffer += bytes
    }

    /// The next whole frame, or nil until more bytes arrive.
    public func next() throws(SPDYProtocolError) -> SPDYFrame? {
        while buffer.count - offset >= 8 {
            var head = ByteReader(Array(buffer[offset..<offset + 8]))
            let word = try head.uint32("frame head")
            let flagsAndLength = try head.uint32("frame length")
            let flags = UInt8(flagsAndLength >> 24)
            let length = Int(flagsAndLength & 0xff_ffff)
            guard length <= maxPayload else { throw .frameTooLarge(length: length, limit: maxPayload) }
            guard buffer.count - offset >= 8 + length else { return nil }
            let body = Array(buffer[offset + 8..<offset + 8 + length])
            offset += 8 + length
            if offset > 64 << 10 {
                buffer.removeFirst(offset)
                offset = 0
            }
            guard word & 0x8000_0000 != 0 else {
                return .data(streamID: word & 0x7fff_ffff, flags: SPDYFlags(rawValue: flags), payload: body)
            }
            let version = UInt16(word >> 16 & 0x7fff)
            guard version == 3 else { throw .unsupportedVersion(version) }
            let rawType = UInt16(word & 0xffff)
            guard let type = SPDYFrame.ControlType(rawValue: rawType) else { continue }  // unknown: skipped
            return try control(type, flags: flags, body)
        }
        return nil
    }

    private func control(_ type: SPDYFrame.ControlType, flags: UInt8, _ body: [UInt8]) throws(SPDYProtocolError)
        -> SPDYFrame
    {
        var r = ByteReader(body)
        switch type {
        case .synStream:
            let id = try r.streamID("SYN_STREAM stream id")
            let associated = try r.streamID("SYN_STREAM associated stream id")
            let priority = try r.uint8("SYN_STREAM priority") >> 5
            _ = try r.uint8("SYN_STREAM slot")
            return .synStream(
                streamID: id, associatedTo: associated, priority: priority, flags: SPDYFlags(rawValue: flags),
                headers: try headers(r.rest()))
        case .synReply:
            let id = try r.streamID("SYN_REPLY stream id")
            return .synReply(streamID: id, flags: SPDYFlags(rawValue: flags), headers: try headers(r.rest()))
        case .headers:
            let id = try r.streamID("HEADERS stream id")
            return .headers(streamID: id, flags: SPDYFlags(rawValue: flags), headers: try headers(r.rest()))
        case .rstStream:
            let id = try r.streamID("RST_STREAM stream id")
            let code = try r.uint32("RST_STREAM status")
            guard let status = SPDYStreamStatus(rawValue: code) else { throw .malformed("RST_STREAM status \(code)") }
            return .rstStream(streamID: id, status: status)
        case .settings:
            let count = try r.uint32("SETTINGS entry count")
            guard Int(count) * 8 == r.remaining else {
                throw .malformed("SETTINGS of \(count) entries is \(body.count) bytes")
            }
            var entries: [SPDYSetting] = []
            for _ in 0..<count {
                let word = try r.uint32("SETTINGS entry id")
                entries.append(
                    SPDYSetting(flags: UInt8(word >> 24), id: word & 0xff_ffff, value: try r.uint32("SETTINGS value")))
            }
            return .settings(clearPrevious: flags & 0x01 != 0, entries: entries)
        case .ping:
            guard body.count == 4 else { throw .malformed("PING of \(body.count) bytes") }
            return .ping(id: try r.uint32("PING id"))
        case .goAway:
            let last = try r.streamID("GOAWAY last stream id")
            // A GOAWAY without the status word (older peers) means OK.
            let code = r.isAtEnd ? 0 : try r.uint32("GOAWAY status")
            return .goAway(lastGoodStreamID: last, status: SPDYSessionStatus(rawValue: code) ?? .protocolError)
        case .windowUpdate:
            let id = try r.streamID("WINDOW_UPDATE stream id")
            let delta = try r.uint32("WINDOW_UPDATE delta") & 0x7fff_ffff
            guard delta > 0 else { throw .malformed("WINDOW_UPDATE with a zero delta") }
            return .windowUpdate(streamID: id, delta: delta)
        }
    }

    private func headers(_ compressed: [UInt8]) throws(SPDYProtocolError) -> SPDYHeaders {
        let block: [UInt8]
        do {
            block = try zlib.decompress(compressed, limit: maxHeaderBlock)
        } catch {
            throw .compression(error.description)
        }
        return try SPDYHeaderBlock.decode(block)
    }
}
