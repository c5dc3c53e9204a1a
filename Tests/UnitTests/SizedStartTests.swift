import Testing

@testable import Streaming

/// A terminal session's process starts with the client's first size when it comes in time, and
/// without one when it does not; sizes after that go to the running process.
@Suite struct SizedStartTests {
    @Test func theFirstSizeIsTheOneTheTerminalStartsWith() async {
        let gate = SizedStart(patience: .seconds(30))
        #expect(gate.offer(TerminalSize(width: 123, height: 45)))
        // A second size before the start is decided is for the running process, not the start.
        #expect(!gate.offer(TerminalSize(width: 1, height: 1)))
        #expect(await gate.firstSize() == TerminalSize(width: 123, height: 45))
    }

    @Test func aSizeThatArrivesWhileTheStartWaitsWakesIt() async {
        let gate = SizedStart(patience: .seconds(30))
        let clock = ContinuousClock()
        let began = clock.now
        async let size = gate.firstSize()
        // sleep: lets firstSize() begin waiting (no signal; the test holds either way)
        try? await Task.sleep(for: .milliseconds(50))
        #expect(gate.offer(TerminalSize(width: 80, height: 24)))
        #expect(await size == TerminalSize(width: 80, height: 24))
        #expect(clock.now - began < .seconds(10))
    }

    @Test func withoutASizeTheStartWaitsOnlyItsPatience() async {
        let gate = SizedStart(patience: .milliseconds(100))
        let clock = ContinuousClock()
        let began = clock.now
        #expect(await gate.firstSize() == nil)
        #expect(clock.now - began < .seconds(10))
        #expect(!gate.offer(TerminalSize(width: 80, height: 24)), "too late: the process resizes instead")
    }

    @Test func aFailedStartLeavesNoProcessAndWakesEveryWaiter() async {
        let gate = SizedStart(patience: .zero)
        async let first = gate.process()
        async let second = gate.process()
        // sleep: lets process() begin waiting (no signal; the test holds either way)
        try? await Task.sleep(for: .milliseconds(20))
        gate.settle(nil)
        #expect(await first == nil)
        #expect(await second == nil)
        #expect(await gate.process() == nil)
    }

    /// A session that ends while its terminal waits for a size (a client cut off at once) starts no
    /// process at all, and does not wait out its patience to learn that.
    @Test func anAbandonedSessionStartsNothing() async {
        let gate = SizedStart(patience: .seconds(30))
        let clock = ContinuousClock()
        let began = clock.now
        async let size = gate.firstSize()
        // sleep: lets firstSize() begin waiting (no signal; the test holds either way)
        try? await Task.sleep(for: .milliseconds(20))
        gate.abandon()
        #expect(await size == nil)
        #expect(!gate.shouldStart)
        #expect(clock.now - began < .seconds(10))
        gate.settle(nil)
        await gate.end()  // nothing to end; returns at once
    }
}
