import Synchronization

/// The streaming requests (exec, attach, port-forward) that CRI calls have issued and no client has
/// opened yet: each under a random single-use token, valid for `ttl` (one minute, as the kubelet's),
/// at most `capacity` at once. A token that is unknown, used or expired finds nothing (HTTP 404).
public final class StreamingTokens<Request: Sendable>: Sendable {
    /// Why a request could not be kept.
    public struct Full: Error, CustomStringConvertible {
        public let capacity: Int
        public var description: String {
            "\(capacity) streaming requests are waiting for their clients; try again later"
        }
    }

    private struct Entry {
        var request: Request
        var expires: ContinuousClock.Instant
    }

    private let entries = Mutex<[String: Entry]>([:])
    private let ttl: Duration
    private let capacity: Int
    private let now: @Sendable () -> ContinuousClock.Instant

    public init(
        ttl: Duration = .seconds(60), capacity: Int = 1000,
        now: @escaping @Sendable () -> ContinuousClock.Instant = { ContinuousClock.now }
    ) {
        self.ttl = ttl
        self.capacity = capacity
        self.now = now
    }

    /// Keeps `request` and returns its token: 32 hex digits from the system's random generator.
    public func insert(_ request: Request) throws(Full) -> String {
        let now = now()
        let token = Self.randomToken()
        let kept = entries.withLock { entries -> Bool in
            if entries.count >= capacity { entries = entries.filter { $0.value.expires > now } }
            guard entries.count < capacity else { return false }
            entries[token] = Entry(request: request, expires: now + ttl)
            return true
        }
        guard kept else { throw Full(capacity: capacity) }
        return token
    }

    /// The request of a live token, which is used up by this call; nil for an unknown, used or
    /// expired one.
    public func take(_ token: String) -> Request? {
        let now = now()
        return entries.withLock { entries -> Request? in
            guard let entry = entries.removeValue(forKey: token), entry.expires > now else { return nil }
            return entry.request
        }
    }

    /// How many requests are waiting (expired ones included until they are swept).
    public var count: Int { entries.withLock { $0.count } }

    static func randomToken() -> String {
        var rng = SystemRandomNumberGenerator()
        return (0..<2).map { _ in
            let part = String(rng.next() as UInt64, radix: 16)
            return String(repeating: "0", count: 16 - part.count) + part
        }.joined()
    }
}
