/// Serializes frames for one SPDY/3 session: owns the session's outgoing header compression
/// context, so frames must be encoded in the order they are sent.
public final class SPDYFrameEncoder {
    private let zlib: SPDYZlibStream

    public init() throws(SPDYProtocolError) {
        do {
            zlib = try SPDYZlibStream(.compress)
        } catch {
            throw .compression(error.description)
        }
    }

    public func encode(_ frame: SPDYFrame) throws(SPDYProtocolError) -> [UInt8] {
        switch frame {
        case .synStream(let id, let associated, let priority, let flags, let headers):
            var body: [UInt8] = []
            body.appendUInt32(id & 0x7fff_ffff)
            body.appendUInt32(associated & 0x7fff_ffff)
            body += [(priority & 0x07) << 5, 0]  // 3 priority bits, then the unused slot byte
            body += try compressed(headers)
            return try control(.synStream, flags: flags.rawValue, body)
        case .synReply(let id, let flags, let headers):
            return try control(.synReply, flags: flags.rawValue, streamID(id) + compressed(headers))
        case .rstStream(let id, let status):
            var body: [UInt8] = []
            body.appendUInt32(id & 0x7fff_ffff)
            body.appendUInt32(status.rawValue)
            return try control(.rstStream, flags: 0, body)
        case .settings(let clear, let entries):
            var body: [UInt8] = []
            body.appendUInt32(UInt32(entries.count))
            for e in entries {
                body.append(e.flags)
                body.appendUInt24(Int(e.id & 0xff_ffff))
                body.appendUInt32(e.value)
            }
            return try control(.settings, flags: clear ? 0x01 : 0, body)
        case .ping(let id):
            var body: [UInt8] = []
            body.appendUInt32(id)
            return try control(.ping, flags: 0, body)
        case .goAway(let last, let status):
            var body: [UInt8] = []
            body.appendUInt32(last & 0x7fff_ffff)
            body.appendUInt32(status.rawValue)
            return try control(.goAway, flags: 0, body)
        case .headers(let id, let flags, let headers):
            return try control(.headers, flags: flags.rawValue, streamID(id) + compressed(headers))
        case .windowUpdate(let id, let delta):
            var body: [UInt8] = []
            body.appendUInt32(id & 0x7fff_ffff)
            body.appendUInt32(delta & 0x7fff_ffff)
            return try control(.windowUpdate, flags: 0, body)
        case .data(let id, let flags, let payload):
            guard payload.count <= SPDYFrameDecoder.maxLength else {
                throw .frameTooLarge(length: payload.count, limit: SPDYFrameDecoder.maxLength)
            }
            var out: [UInt8] = []
            out.appendUInt32(id & 0x7fff_ffff)
            out.append(flags.rawValue)
            out.appendUInt24(payload.count)
            return out + payload
        }
    }

    /// A 31-bit stream id field (the reserved top bit clear).
    private func streamID(_ id: UInt32) -> [UInt8] {
        var out: [UInt8] = []
        out.appendUInt32(id & 0x7fff_ffff)
        return out
    }

    private func compressed(_ headers: SPDYHeaders) throws(SPDYProtocolError) -> [UInt8] {
        do {
            return try zlib.compress(SPDYHeaderBlock.encode(headers))
        } catch {
            throw .compression(error.description)
        }
    }

    private func control(_ type: SPDYFrame.ControlType, flags: UInt8, _ body: [UInt8]) throws(SPDYProtocolError)
        -> [UInt8]
    {
        guard body.count <= SPDYFrameDecoder.maxLength else {
            throw .frameTooLarge(length: body.count, limit: SPDYFrameDecoder.maxLength)
        }
        var out: [UInt8] = [0x80, 0x03, UInt8(type.rawValue >> 8), UInt8(type.rawValue & 0xff), flags]
        out.appendUInt24(body.count)
        return out + body
    }
}
