import AgentClient
import Synchronization
import Testing

@testable import Containers

/// A stream's writes to the guest stay in flight together up to the limit, go out in order, and the
/// guest's refusal of one reaches the writer.
@Suite struct StreamWriterTests {
    /// Replies the test answers by hand, in the order they were sent.
    final class Guest: Sendable {
        private let state = Mutex<(sent: [Int], waiting: [CheckedContinuation<Void, Never>], answered: Int)>(
            ([], [], 0))
        var sent: [Int] { state.withLock { $0.sent } }

        func send(_ n: Int, failing: Bool = false) -> AgentReply {
            let index = state.withLock { s in
                s.sent.append(n)
                return s.sent.count - 1
            }
            return AgentReply { () async throws(AgentClientError) in
                await withCheckedContinuation { c in
                    let now = self.state.withLock { s -> Bool in
                        if index < s.answered { return true }
                        s.waiting.append(c)
                        return false
                    }
                    if now { c.resume() }
                }
                if failing { throw .agent(.failedPrecondition, message: "connection closed") }
            }
        }

        /// Answers every write sent so far.
        func answerAll() {
            let waiting = state.withLock { s in
                s.answered = s.sent.count
                defer { s.waiting = [] }
                return s.waiting
            }
            for c in waiting { c.resume() }
        }
    }

    @Test func keepsWritesInFlightUpToTheLimitThenWaits() async throws {
        let guest = Guest()
        let writer = StreamWriter(limit: 100)
        for _ in 0..<3 { try await writer.write(30) { guest.send(30) } }
        #expect(guest.sent == [30, 30, 30])  // sent without waiting for any answer
        #expect(await writer.inFlight == 90)
        let fourth = Task { try await writer.write(30) { guest.send(30) } }
        // sleep: the fourth write must not be sent within this window
        try await Task.sleep(for: .milliseconds(50))
        #expect(guest.sent.count == 3)  // 120 would be over the limit: waits for an answer
        guest.answerAll()
        try await fourth.value
        #expect(guest.sent == [30, 30, 30, 30])
        guest.answerAll()
        try await writer.flush()
        #expect(await writer.inFlight == 0)
    }

    @Test func aRefusedWriteFailsALaterWriteAndTheFlush() async {
        let guest = Guest()
        let writer = StreamWriter(limit: 50)
        await #expect(throws: Never.self) { try await writer.write(40) { guest.send(40, failing: true) } }
        guest.answerAll()
        await #expect(throws: AgentClientError.self) { try await writer.write(40) { guest.send(40) } }
        guest.answerAll()
        await #expect(throws: Never.self) { try await writer.flush() }
    }
}
