import Synchronization

/// A clock whose sleeps return at once and only move its time: code that retries or waits is tested
/// without waiting (and the test sees how long it would have waited).
final class TestClock: Clock, Sendable {
    struct Instant: InstantProtocol {
        var offset: Duration
        func advanced(by duration: Duration) -> Instant { Instant(offset: offset + duration) }
        func duration(to other: Instant) -> Duration { other.offset - offset }
        static func < (a: Instant, b: Instant) -> Bool { a.offset < b.offset }
    }

    private let elapsed = Mutex(Duration.zero)
    private let sleeps = Mutex(0)

    var now: Instant { Instant(offset: elapsed.withLock { $0 }) }
    var minimumResolution: Duration { .zero }
    /// How many times code slept on this clock.
    var sleepCount: Int { sleeps.withLock { $0 } }

    // sleep: this clock's own sleep: it moves the time and returns at once
    func sleep(until deadline: Instant, tolerance: Duration?) async throws {
        try Task.checkCancellation()
        sleeps.withLock { $0 += 1 }
        elapsed.withLock { $0 = max($0, deadline.offset) }
    }
}
