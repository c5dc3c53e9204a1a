import Crypto
import Errors

/// A validated content digest (`sha256:<64 lowercase hex>`). Only sha256 is accepted: that is what
/// every registry and OCI layout uses, and it keeps untrusted input from choosing an algorithm.
public struct Digest: Hashable, Sendable, Codable, CustomStringConvertible, Comparable {
    public let hex: String
    public var description: String { "sha256:" + hex }

    public init(parsing text: String) throws(CocoonError) {
        guard text.hasPrefix("sha256:") else {
            throw .invalidArgument("digest \"\(text.prefix(80))\" is not a sha256 digest")
        }
        let hex = text.dropFirst(7)
        guard hex.count == 64, hex.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) }) else {
            throw .invalidArgument("digest \"\(text.prefix(80))\" is not 64 lowercase hex digits")
        }
        self.hex = String(hex)
    }

    init(hasher: SHA256) {
        self.hex = hasher.finalize().map { byte in
            let s = String(byte, radix: 16)
            return byte < 16 ? "0" + s : s
        }.joined()
    }

    public static func of<D: Sequence>(_ bytes: D) -> Digest where D.Element == UInt8 {
        var h = SHA256()
        h.update(data: Array(bytes))
        return Digest(hasher: h)
    }

    public static func < (a: Digest, b: Digest) -> Bool { a.hex < b.hex }

    public init(from decoder: Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        do { self = try Digest(parsing: text) } catch {
            throw DecodingError.dataCorrupted(
                .init(codingPath: decoder.codingPath, debugDescription: error.description))
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }
}

/// Incremental sha256 for callers outside this file.
struct SHA256Stream {
    private var hasher = SHA256()
    mutating func update(_ raw: UnsafeRawBufferPointer) { hasher.update(bufferPointer: raw) }
    func finalize() -> Digest { Digest(hasher: hasher) }
}
