import Synchronization
import Testing

@testable import Streaming

/// The single-use, expiring tokens of streaming URLs.
@Suite struct StreamingTokensTests {
    /// A clock a test moves by hand.
    final class ManualClock: Sendable {
        private let instant = Mutex(ContinuousClock.now)
        func advance(_ d: Duration) { instant.withLock { $0 += d } }
        var now: ContinuousClock.Instant { instant.withLock { $0 } }
    }

    @Test func aTokenWorksOnceAndOnlyBeforeItExpires() throws {
        let clock = ManualClock()
        let tokens = StreamingTokens<String>(ttl: .seconds(60), now: { clock.now })
        let first = try tokens.insert("exec a")
        let second = try tokens.insert("exec b")
        #expect(first.count == 32 && first != second && first.allSatisfy(\.isHexDigit))
        #expect(tokens.take(first) == "exec a")
        #expect(tokens.take(first) == nil, "used")
        #expect(tokens.take("0123") == nil, "unknown")
        clock.advance(.seconds(61))
        #expect(tokens.take(second) == nil, "expired")
    }

    @Test func aFullTableSweepsExpiredTokensThenRefuses() throws {
        let clock = ManualClock()
        let tokens = StreamingTokens<Int>(ttl: .seconds(60), capacity: 2, now: { clock.now })
        _ = try tokens.insert(1)
        _ = try tokens.insert(2)
        #expect(throws: StreamingTokens<Int>.Full.self) { _ = try tokens.insert(3) }
        clock.advance(.seconds(61))
        let fresh = try tokens.insert(4)
        #expect(tokens.count == 1 && tokens.take(fresh) == 4)
    }
}
