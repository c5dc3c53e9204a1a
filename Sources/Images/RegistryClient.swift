import AsyncHTTPClient
import Config
import Crypto
import Errors
import Foundation
import Glibc
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

/// Owns HTTP access to OCI distribution (v2) registries: which endpoints serve a registry (mirrors
/// first, plain HTTP only for insecure or loopback hosts), the Basic/Bearer challenge flow with a
/// token cache, redirects (credentials never follow to another host), and retries of transient
/// failures. Everything read from a registry is size-capped and digest-verified by the caller.
public final class RegistryClient: Sendable {
    let http: HTTPClient
    let settings: RegistrySettings
    let tokens = TokenCache()
    let logger: Logger
    static let attempts = 3

    public init(settings: RegistrySettings, logger: Logger = Logger(label: "cocoon.registry")) {
        var config = HTTPClient.Configuration(
            redirectConfiguration: .disallow,
            timeout: .init(connect: .seconds(5), read: .seconds(60)))
        config.decompression = .disabled
        self.http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: config)
        self.settings = settings
        self.logger = logger
    }

    public func shutdown() async {
        // try?: shutting down twice fails harmlessly
        try? await http.shutdown()
    }

    /// Base URLs that serve `domain`, in the order to try them: configured mirrors, then the registry.
    public func endpoints(for domain: String) -> [String] {
        let upstreamHost = domain == ImageReference.defaultDomain ? "registry-1.docker.io" : domain
        let scheme = Self.allowsPlainHTTP(domain, insecure: settings.insecure) ? "http" : "https"
        let mirrors = (settings.mirrors[domain] ?? []).map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
        return mirrors + ["\(scheme)://\(upstreamHost)"]
    }

    /// Scheme, host and port of a URL (the scheme's default port when none is given).
    static func origin(_ url: String) -> String? {
        guard let u = URL(string: url), let scheme = u.scheme?.lowercased(), let host = u.host?.lowercased() else {
            return nil
        }
        let port = u.port ?? (scheme == "https" ? 443 : scheme == "http" ? 80 : 0)
        return "\(scheme)://\(host):\(port)"
    }

    /// Plain HTTP is allowed only for hosts configured as insecure and for loopback.
    public static func allowsPlainHTTP(_ domain: String, insecure: [String]) -> Bool {
        if insecure.contains(domain) { return true }
        let host: Substring
        if domain.hasPrefix("["), let close = domain.firstIndex(of: "]") {
            host = domain[domain.index(after: domain.startIndex)..<close]
        } else {
            host = domain.split(separator: ":", maxSplits: 1).first ?? Substring(domain)
        }
        if host == "localhost" || host == "::1" { return true }
        let octets = host.split(separator: ".", omittingEmptySubsequences: false)
        return octets.count == 4 && octets[0] == "127" && octets.allSatisfy { UInt8($0) != nil }
    }

    // MARK: - Requests

    /// One registry request with auth, redirects and retries. `scope` is the token scope
    /// (`repository:NAME:pull`). The caller consumes (or drops) the body.
    func send(
        _ url: String, method: HTTPMethod = .GET, accept: [String] = [], scope: String,
        credentials: RegistryCredentials, timeout: TimeAmount
    ) async throws(CocoonError) -> HTTPClientResponse {
        var lastError = CocoonError.unavailable("no attempt made for \(url)")
        for attempt in 1...Self.attempts {
            do {
                let response = try await sendOnce(
                    url, method: method, accept: accept, scope: scope,
                    credentials: credentials, timeout: timeout)
                let code = response.status.code
                if (code == 429 || code >= 500) && attempt < Self.attempts {
                    lastError = .unavailable("\(method) \(url): HTTP \(code)")
                } else {
                    return response
                }
            } catch let e as CocoonError {
                throw e
            } catch {
                lastError = .unavailable("\(method) \(Self.redacted(url)): \(error)")
                // The HTTP client already retried connecting until its connect timeout.
                if attempt == Self.attempts || Self.isUnreachable(error) { break }
            }
            logger.debug("retrying registry request", metadata: ["url": "\(url)", "attempt": "\(attempt)"])
            // try?: cancellation ends the back-off early
            try? await Task.sleep(for: .milliseconds(200 << attempt))
        }
        throw lastError
    }

    private func sendOnce(
        _ url: String, method: HTTPMethod, accept: [String], scope: String,
        credentials: RegistryCredentials, timeout: TimeAmount
    ) async throws -> HTTPClientResponse {
        guard let origin = URL(string: url)?.host, let home = Self.origin(url) else {
            throw CocoonError.invalidArgument("bad registry URL \(url)")
        }
        // Who asked is part of the key: a token fetched with one pull's credentials never serves a
        // pull without them (or with others).
        let authKey =
            (URL(string: url).map { "\($0.host ?? ""):\($0.port ?? 0)" } ?? url) + " " + scope + " "
            + credentials.fingerprint
        var authorization: String? =
            credentials.registryToken.isEmpty ? await tokens.token(for: authKey) : "Bearer " + credentials.registryToken
        var triedChallenge = false
        var current = url
        var redirects = 0
        while true {
            // Credentials go only where they were given for: same scheme, host and port (not to
            // another port of the host, not down an https -> http redirect).
            let sameHost = Self.origin(current) == home
            let request = Self.makeRequest(
                current, method: method, accept: accept, authorization: sameHost ? authorization : nil)
            let response = try await http.execute(request, timeout: timeout)
            switch response.status.code {
            case 301, 302, 303, 307, 308:
                guard let location = response.headers.first(name: "Location"), redirects < 5 else {
                    throw CocoonError.integrity("\(method) \(url): redirect without Location, or too many redirects")
                }
                redirects += 1
                current = URL(string: location, relativeTo: URL(string: current))?.absoluteString ?? location
                continue
            case 401 where sameHost && !triedChallenge:
                triedChallenge = true
                authorization = try await answerChallenge(
                    response.headers.first(name: "WWW-Authenticate") ?? "", url: url, origin: origin, scope: scope,
                    credentials: credentials, cacheKey: authKey)
                continue
            case 401:
                throw credentials.isEmpty
                    ? CocoonError.unauthenticated(
                        "registry \(origin) requires authentication and no credentials were given")
                    : CocoonError.permissionDenied(
                        "registry \(origin) rejected the "
                            + "credentials\(credentials.username.isEmpty ? "" : " for user \(credentials.username)")"
                    )
            case 403:
                throw CocoonError.permissionDenied("registry \(origin) denied access to \(scope)")
            default:
                return response
            }
        }
    }

    /// A request for `url` with the Accept and User-Agent headers, and `authorization` when given.
    private static func makeRequest(_ url: String, method: HTTPMethod, accept: [String], authorization: String?)
        -> HTTPClientRequest
    {
        var request = HTTPClientRequest(url: url)
        request.method = method
        if !accept.isEmpty { request.headers.add(name: "Accept", value: accept.joined(separator: ", ")) }
        request.headers.add(name: "User-Agent", value: "cocoon/0.1")
        if let authorization { request.headers.add(name: "Authorization", value: authorization) }
        return request
    }

    /// Parses a 401's `WWW-Authenticate` header and answers the challenge; returns the Authorization value.
    private func answerChallenge(
        _ header: String, url: String, origin: String, scope: String, credentials: RegistryCredentials,
        cacheKey: String
    ) async throws -> String {
        guard let challenge = AuthChallenge(header: header) else {
            throw CocoonError.unauthenticated(
                "registry \(origin) requires authentication with an unsupported scheme: "
                    + "\"\(header.prefix(100))\""
            )
        }
        let registry = URL(string: url).flatMap { u in u.port.map { "\(origin):\($0)" } } ?? origin
        return try await authorize(
            challenge, scope: scope, origin: origin, registry: registry, credentials: credentials,
            cacheKey: cacheKey)
    }

    /// Answers a challenge: Basic sends the password directly; Bearer fetches a token from the realm.
    private func authorize(
        _ challenge: AuthChallenge, scope: String, origin: String, registry: String, credentials: RegistryCredentials,
        cacheKey: String
    ) async throws -> String {
        switch challenge.scheme {
        case .basic:
            guard credentials.hasPassword else {
                throw CocoonError.unauthenticated(
                    "registry \(origin) requires authentication (basic) and no credentials were given")
            }
            return credentials.basicHeader
        case .bearer:
            return try await bearerToken(
                challenge, scope: scope, origin: origin, registry: registry, credentials: credentials,
                cacheKey: cacheKey)
        }
    }

    /// Fetches a Bearer token from the challenge's realm (with the credentials, if any) and caches it
    /// under `cacheKey`; returns the Authorization value.
    private func bearerToken(
        _ challenge: AuthChallenge, scope: String, origin: String, registry: String, credentials: RegistryCredentials,
        cacheKey: String
    ) async throws -> String {
        guard let realm = challenge.parameters["realm"], let components = URLComponents(string: realm),
            components.scheme == "https" || components.scheme == "http"
        else {
            throw CocoonError.unauthenticated("registry \(origin) sent a bearer challenge without a usable realm")
        }
        // The realm gets the credentials: over HTTPS, unless the registry itself may be plain HTTP.
        guard components.scheme == "https" || Self.allowsPlainHTTP(registry, insecure: settings.insecure) else {
            throw CocoonError.unauthenticated(
                "registry \(origin) sent a token realm over plain HTTP (\(realm)); credentials go only over HTTPS")
        }
        let request = try Self.tokenRequest(
            challenge, realm: realm, components: components, scope: scope, origin: origin, credentials: credentials)
        let response = try await http.execute(request, timeout: .seconds(30))
        let body = try await response.body.collect(upTo: 1 << 20)
        switch response.status.code {
        case 200: break
        case 401, 403:
            throw credentials.isEmpty
                ? CocoonError.unauthenticated(
                    "registry \(origin) requires authentication (token server \(components.host ?? realm) "
                        + "refused an anonymous token)"
                )
                : CocoonError.permissionDenied(
                    "token server \(components.host ?? realm) rejected the "
                        + "credentials\(credentials.username.isEmpty ? "" : " for user \(credentials.username)")"
                )
        default:
            throw CocoonError.unavailable("token server \(realm) answered HTTP \(response.status.code)")
        }
        struct TokenResponse: Decodable {
            var token: String?
            var access_token: String?
            var expires_in: Int?
        }
        // try?: a bad token answer is reported just below
        guard let parsed = try? JSONDecoder().decode(TokenResponse.self, from: Data(body.readableBytesView)),
            let token = parsed.token ?? parsed.access_token, !token.isEmpty
        else {
            throw CocoonError.unauthenticated("token server \(realm) returned no token")
        }
        let lifetime = max(30, min(parsed.expires_in ?? 60, 3600)) - 10
        await tokens.store("Bearer " + token, for: cacheKey, lifetime: .seconds(lifetime))
        return "Bearer " + token
    }

    /// The token request to `realm` for `scope`: a POST with the identity (refresh) token when there is
    /// one, else a GET carrying the username and password as Basic auth when given.
    private static func tokenRequest(
        _ challenge: AuthChallenge, realm: String, components: URLComponents, scope: String, origin: String,
        credentials: RegistryCredentials
    ) throws -> HTTPClientRequest {
        var components = components
        let service = challenge.parameters["service"] ?? ""
        var query = components.queryItems ?? []
        if !service.isEmpty { query.append(URLQueryItem(name: "service", value: service)) }
        query.append(URLQueryItem(name: "scope", value: challenge.parameters["scope"] ?? scope))
        var request: HTTPClientRequest
        if !credentials.identityToken.isEmpty {
            request = HTTPClientRequest(url: realm)
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
            var form = URLComponents()
            form.queryItems =
                query + [
                    URLQueryItem(name: "grant_type", value: "refresh_token"),
                    URLQueryItem(name: "refresh_token", value: credentials.identityToken),
                    URLQueryItem(name: "client_id", value: "cocoon"),
                ]
            request.body = .bytes(ByteBuffer(string: form.percentEncodedQuery ?? ""))
        } else {
            components.queryItems = query
            guard let url = components.url?.absoluteString else {
                throw CocoonError.unauthenticated("registry \(origin): bad token realm \(realm)")
            }
            request = HTTPClientRequest(url: url)
            if credentials.hasPassword {
                request.headers.add(name: "Authorization", value: credentials.basicHeader)
            }
        }
        return request
    }

    /// Connection refused, unknown host, connect timeout: the endpoint is not there.
    static func isUnreachable(_ error: Error) -> Bool {
        if let io = error as? IOError,
            io.errnoCode == ECONNREFUSED || io.errnoCode == EHOSTUNREACH || io.errnoCode == ENETUNREACH
        {
            return true
        }
        if error is SocketAddressError || error is NIOConnectionError { return true }
        if let h = error as? HTTPClientError, h == .connectTimeout { return true }
        return false
    }

    static func redacted(_ url: String) -> String {
        guard let q = url.firstIndex(of: "?") else { return url }
        return String(url[..<q]) + "?…"
    }
}
