/// The SPDY/3 name/value block before compression: a 32-bit pair count, then for each pair a
/// 32-bit length and the name, a 32-bit length and the value (several values joined by NUL).
enum SPDYHeaderBlock {
    /// At most this many pairs in one block (Kubernetes sends fewer than ten).
    static let maxPairs = 1024

    static func encode(_ headers: SPDYHeaders) -> [UInt8] {
        var out: [UInt8] = []
        out.appendUInt32(UInt32(headers.fields.count))
        for field in headers.fields {
            let name = Array(field.name.utf8)
            let value = Array(field.values.joined(separator: "\0").utf8)
            out.appendUInt32(UInt32(name.count))
            out += name
            out.appendUInt32(UInt32(value.count))
            out += value
        }
        return out
    }

    static func decode(_ block: [UInt8]) throws(SPDYProtocolError) -> SPDYHeaders {
        var reader = ByteReader(block)
        let count = try reader.uint32("header pair count")
        guard count <= maxPairs else { throw .malformed("header block has \(count) pairs (at most \(maxPairs))") }
        var headers = SPDYHeaders()
        for _ in 0..<count {
            let name = try reader.string("header name")
            guard !name.isEmpty, name == name.lowercased() else {
                throw .malformed("header name \"\(name.prefix(64))\" is empty or not lowercase")
            }
            let value = try reader.string("header value of \(name.prefix(64))")
            for part in value.split(separator: "\0", omittingEmptySubsequences: false) {
                headers.add(name, String(part))
            }
        }
        guard reader.isAtEnd else { throw .malformed("\(reader.remaining) bytes after the header pairs") }
        return headers
    }
}

/// Why a peer's bytes are not a SPDY/3 session: the session is ended with GOAWAY (or the stream
/// reset), the daemon goes on.
public enum SPDYProtocolError: Error, Equatable, CustomStringConvertible {
    case unsupportedVersion(UInt16)
    case frameTooLarge(length: Int, limit: Int)
    case malformed(String)
    case compression(String)

    public var description: String {
        switch self {
        case .unsupportedVersion(let v): "SPDY version \(v) is not supported (only 3)"
        case .frameTooLarge(let length, let limit): "SPDY frame of \(length) bytes exceeds the limit of \(limit)"
        case .malformed(let m): "malformed SPDY frame: \(m)"
        case .compression(let m): "SPDY header compression: \(m)"
        }
    }
}

/// Reads big-endian fields from a byte array, failing (never trapping) at its end.
struct ByteReader {
    private let bytes: [UInt8]
    private var offset = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var isAtEnd: Bool { offset == bytes.count }
    var remaining: Int { bytes.count - offset }

    mutating func uint8(_ what: String) throws(SPDYProtocolError) -> UInt8 {
        guard remaining >= 1 else { throw .malformed("\(what) is cut off") }
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func uint32(_ what: String) throws(SPDYProtocolError) -> UInt32 {
        guard remaining >= 4 else { throw .malformed("\(what) is cut off") }
        defer { offset += 4 }
        return bytes[offset..<offset + 4].reduce(0) { $0 << 8 | UInt32($1) }
    }

    /// A 31-bit stream id (the top bit is reserved and ignored).
    mutating func streamID(_ what: String) throws(SPDYProtocolError) -> UInt32 {
        try uint32(what) & 0x7fff_ffff
    }

    mutating func bytes(_ count: Int, _ what: String) throws(SPDYProtocolError) -> [UInt8] {
        guard count >= 0, remaining >= count else { throw .malformed("\(what) is cut off") }
        defer { offset += count }
        return Array(bytes[offset..<offset + count])
    }

    mutating func rest() -> [UInt8] {
        defer { offset = bytes.count }
        return Array(bytes[offset...])
    }

    /// A 32-bit length and that many bytes of UTF-8.
    mutating func string(_ what: String) throws(SPDYProtocolError) -> String {
        let length = try uint32("length of \(what)")
        guard Int(length) <= remaining else { throw .malformed("\(what) of \(length) bytes is cut off") }
        return String(decoding: try bytes(Int(length), what), as: UTF8.self)
    }
}

extension [UInt8] {
    mutating func appendUInt32(_ v: UInt32) {
        append(contentsOf: [UInt8(v >> 24 & 0xff), UInt8(v >> 16 & 0xff), UInt8(v >> 8 & 0xff), UInt8(v & 0xff)])
    }

    mutating func appendUInt24(_ v: Int) {
        append(contentsOf: [UInt8(v >> 16 & 0xff), UInt8(v >> 8 & 0xff), UInt8(v & 0xff)])
    }
}
