import AgentClient
import Synchronization
import Testing

/// `AgentClient.onLateCalls`: a call still unanswered after the given time is reported once, by
/// name, before its deadline; a call whose whole deadline is shorter is not.
@Suite struct LateCallHookTests {
    @Test func aCallUnansweredPastItsTimeIsReportedOnce() async throws {
        let guest = try EvilAgentTests.FloodingGuest()
        guest.runReading()  // takes every request, answers none
        defer { guest.stop.store(true, ordering: .relaxed) }
        let client = try await AgentClient.connect(.serial(path: guest.path), token: EvilAgentTests.token)
        let late = Mutex<[String]>([])
        client.onLateCalls(after: .milliseconds(300)) { name in late.withLock { $0.append(name) } }
        // sleep: the hook is installed on the channel's event loop; let it run first
        try await Task.sleep(for: .milliseconds(50))
        let long = Task { () async throws(AgentClientError) -> GuestHealth in
            try await client.health(timeout: .seconds(5))
        }
        await #expect(throws: AgentClientError.self) { try await client.health(timeout: .milliseconds(200)) }
        // sleep: past the 300 ms, well before the long call's 5 s deadline
        try await Task.sleep(for: .milliseconds(700))
        #expect(late.withLock { $0 } == ["Health"])
        await #expect(throws: AgentClientError.self) { try await long.value }
        #expect(late.withLock { $0 } == ["Health"], "reported once, not again at its deadline")
        await client.close()
    }
}
