import Errors

/// A normalized image reference, named the way the kubelet and containerd name images:
/// `busybox` → `docker.io/library/busybox:latest`; `name@sha256:…` pulls by digest.
public struct ImageReference: Hashable, Sendable, CustomStringConvertible {
    public static let defaultDomain = "docker.io"
    public static let defaultTag = "latest"

    /// Registry host (and port), e.g. `docker.io`, `127.0.0.1:5000`.
    public let domain: String
    /// Repository path inside the registry, e.g. `library/busybox`.
    public let path: String
    /// The tag, absent when pulled by digest.
    public let tag: String?
    public let digest: Digest?

    /// `domain/path`, the repository's full name.
    public var name: String { domain + "/" + path }
    /// Canonical text: `name:tag` or `name@sha256:…`.
    public var description: String {
        if let digest { return name + "@" + digest.description }
        return name + ":" + (tag ?? Self.defaultTag)
    }
    /// What the registry's manifest endpoint is asked for: the digest if given, else the tag.
    public var manifestReference: String { digest?.description ?? tag ?? Self.defaultTag }

    public init(parsing raw: String) throws(CocoonError) {
        let text = raw.trimmingSpaces
        guard !text.isEmpty else { throw .invalidArgument("image reference is empty") }
        guard text.utf8.count <= 4096 else { throw .invalidArgument("image reference is longer than 4096 bytes") }
        var rest = Substring(text)
        var digest: Digest?
        if let at = rest.firstIndex(of: "@") {
            digest = try Digest(parsing: String(rest[rest.index(after: at)...]))
            rest = rest[..<at]
        }
        var tag: String?
        if let colon = rest.lastIndex(of: ":"), !rest[colon...].contains("/") {
            tag = String(rest[rest.index(after: colon)...])
            rest = rest[..<colon]
        }
        var components = rest.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        var domain = Self.defaultDomain
        if components.count > 1, let first = components.first,
            first.contains(".") || first.contains(":") || first == "localhost"
        {
            domain = first
            components.removeFirst()
        }
        if domain == "index.docker.io" || domain == "registry-1.docker.io" { domain = Self.defaultDomain }
        if domain == Self.defaultDomain && components.count == 1 { components.insert("library", at: 0) }
        guard Self.validDomain(domain) else {
            throw .invalidArgument("image \"\(text)\": invalid registry host \"\(domain)\"")
        }
        for c in components where !Self.validPathComponent(c) {
            throw .invalidArgument(
                "image \"\(text)\": invalid repository name component \"\(c)\" (lowercase letters, digits and . "
                    + "_ - separators)"
            )
        }
        if let tag, !Self.validTag(tag) {
            throw .invalidArgument("image \"\(text)\": invalid tag \"\(tag)\"")
        }
        self.domain = domain
        self.path = components.joined(separator: "/")
        self.tag = digest == nil ? (tag ?? Self.defaultTag) : nil
        self.digest = digest
    }

    /// The same repository at another tag or digest.
    public func with(digest: Digest) -> ImageReference {
        ImageReference(domain: domain, path: path, tag: nil, digest: digest)
    }

    private init(domain: String, path: String, tag: String?, digest: Digest?) {
        self.domain = domain
        self.path = path
        self.tag = tag
        self.digest = digest
    }

    static func validDomain(_ d: String) -> Bool {
        guard !d.isEmpty, d.utf8.count <= 255 else { return false }
        return d.utf8.allSatisfy {
            isAlnum($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: ":")
                || $0 == UInt8(ascii: "[") || $0 == UInt8(ascii: "]")
        }
    }

    /// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
    static func validPathComponent(_ c: String) -> Bool {
        let b = Array(c.utf8)
        guard let first = b.first, let last = b.last, isLowerAlnum(first), isLowerAlnum(last) else { return false }
        var i = 0
        while i < b.count {
            if isLowerAlnum(b[i]) {
                i += 1
                continue
            }
            var j = i
            while j < b.count, !isLowerAlnum(b[j]) { j += 1 }
            let sep = String(decoding: b[i..<j], as: UTF8.self)
            guard sep == "." || sep == "_" || sep == "__" || sep.allSatisfy({ $0 == "-" }) else { return false }
            i = j
        }
        return true
    }

    /// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`
    static func validTag(_ t: String) -> Bool {
        let b = Array(t.utf8)
        guard let first = b.first, b.count <= 128, isAlnum(first) || first == UInt8(ascii: "_") else { return false }
        return b.allSatisfy {
            isAlnum($0) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-")
        }
    }
}

private func isLowerAlnum(_ c: UInt8) -> Bool { (48...57).contains(c) || (97...122).contains(c) }
private func isAlnum(_ c: UInt8) -> Bool { isLowerAlnum(c) || (65...90).contains(c) }

extension String {
    var trimmingSpaces: String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" || f == "\n" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" || l == "\n" { s.removeLast() }
        return String(s)
    }
}
