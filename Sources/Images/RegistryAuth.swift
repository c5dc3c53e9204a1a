import Errors
import Foundation

/// Credentials for one pull, from the CRI `AuthConfig` (username/password, `auth`, tokens).
public struct RegistryCredentials: Sendable, Equatable {
    public var username: String = ""
    public var password: String = ""
    /// An OAuth2 refresh token, exchanged at the token endpoint.
    public var identityToken: String = ""
    /// A bearer token sent to the registry as is.
    public var registryToken: String = ""
    public init(username: String = "", password: String = "", identityToken: String = "", registryToken: String = "") {
        self.username = username
        self.password = password
        self.identityToken = identityToken
        self.registryToken = registryToken
    }

    /// Decodes the docker-config style `auth` field (`base64(user:password)`).
    public init(auth: String) throws(CocoonError) {
        guard let data = Data(base64Encoded: auth), let text = String(data: data, encoding: .utf8),
            let colon = text.firstIndex(of: ":")
        else {
            throw .invalidArgument("auth.auth is not base64 of \"user:password\"")
        }
        self.init(username: String(text[..<colon]), password: String(text[text.index(after: colon)...]))
    }

    /// A hash of every secret field: what keys the token cache and the join of concurrent pulls, so
    /// that what one set of credentials opened is never handed to a client with other (or none).
    public var fingerprint: String {
        var bytes: [UInt8] = []
        for field in [username, password, identityToken, registryToken] {
            bytes += Array(String(field.utf8.count).utf8) + [0x3A] + Array(field.utf8)
        }
        return isEmpty ? "anonymous" : Digest.of(bytes).hex
    }

    public var isEmpty: Bool { username.isEmpty && password.isEmpty && identityToken.isEmpty && registryToken.isEmpty }
    var hasPassword: Bool { !username.isEmpty || !password.isEmpty }
    var basicHeader: String { "Basic " + Data("\(username):\(password)".utf8).base64EncodedString() }
}

/// A parsed `WWW-Authenticate` challenge: `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`.
public struct AuthChallenge: Equatable, Sendable {
    public enum Scheme: String, Sendable { case basic, bearer }
    public var scheme: Scheme
    public var parameters: [String: String]

    /// Parses one challenge header; nil when the scheme is neither Basic nor Bearer.
    public init?(header: String) {
        let trimmed = header.trimmingSpaces
        let space = trimmed.firstIndex(of: " ") ?? trimmed.endIndex
        guard let scheme = Scheme(rawValue: trimmed[..<space].lowercased()) else { return nil }
        self.scheme = scheme
        self.parameters = Self.parameters(String(trimmed[space...]))
    }

    /// `k="v", k2=v2` with quoted strings that may contain commas and escaped quotes.
    static func parameters(_ text: String) -> [String: String] {
        var result: [String: String] = [:]
        var i = text.startIndex
        func skip(_ chars: Set<Character>) {
            while i < text.endIndex, chars.contains(text[i]) { i = text.index(after: i) }
        }
        while i < text.endIndex {
            skip([" ", ","])
            let keyStart = i
            while i < text.endIndex, text[i] != "=", text[i] != "," { i = text.index(after: i) }
            let key = text[keyStart..<i].trimmingCharacters(in: .whitespaces).lowercased()
            guard i < text.endIndex, text[i] == "=" else { continue }
            i = text.index(after: i)
            var value = ""
            if i < text.endIndex, text[i] == "\"" {
                i = text.index(after: i)
                while i < text.endIndex, text[i] != "\"" {
                    if text[i] == "\\", text.index(after: i) < text.endIndex { i = text.index(after: i) }
                    value.append(text[i])
                    i = text.index(after: i)
                }
                if i < text.endIndex { i = text.index(after: i) }
            } else {
                let start = i
                while i < text.endIndex, text[i] != "," { i = text.index(after: i) }
                value = text[start..<i].trimmingCharacters(in: .whitespaces)
            }
            if !key.isEmpty { result[key] = value }
        }
        return result
    }
}

/// Bearer tokens already obtained, per registry host and scope, until they expire.
actor TokenCache {
    private var tokens: [String: (token: String, expires: ContinuousClock.Instant)] = [:]

    func token(for key: String) -> String? {
        guard let t = tokens[key] else { return nil }
        if t.expires < .now {
            tokens[key] = nil
            return nil
        }
        return t.token
    }

    func store(_ token: String, for key: String, lifetime: Duration) {
        tokens[key] = (token, .now + lifetime)
    }
}
