import CAgentSys
import Foundation
import Glibc
import Testing

/// The guest agent's hung-request detector, run on the host: work that stays armed is reported
/// with its name, the agent's kernel wait and the kernel's last messages, again every period, and
/// nothing is said once it is disarmed. Serialized: the detector is one per process.
@Suite(.serialized) struct AgentWatchdogTests {
    /// The detector's reports go to a pipe of the test's (non-blocking to read).
    final class WatchdogOutput {
        let read: Int32
        let write: Int32
        init() throws {
            var fds: [Int32] = [0, 0]
            guard pipe(&fds) == 0 else { throw POSIXError(.EMFILE) }
            (read, write) = (fds[0], fds[1])
            _ = fcntl(read, F_SETFL, fcntl(read, F_GETFL) | O_NONBLOCK)
            cocoon_watchdog_install(write)
        }
        deinit {
            close(read)
            close(write)
        }
    }

    @Test func aStuckRequestIsReportedUntilItEnds() async throws {
        let output = try WatchdogOutput()
        cocoon_watchdog_arm("request 7 (startContainer)", 1)
        // A child of the "agent" that is stuck too: its wait is shown.
        let child = fork()
        if child == 0 {
            pause()
            _exit(0)
        }
        defer {
            kill(child, SIGKILL)
            var status: Int32 = 0
            waitpid(child, &status, 0)
        }
        // sleep: armed for 2.5 s (a rate test: the C detector reports on real time, once a second)
        try await Task.sleep(for: .milliseconds(2500))
        cocoon_watchdog_disarm()
        // sleep: a report begun before the disarm reaches the pipe (no signal to wait for)
        try await Task.sleep(for: .milliseconds(1200))
        var text = ""
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = Glibc.read(output.read, &buffer, buffer.count)
            guard n > 0 else { break }
            text += String(decoding: buffer[0..<n], as: UTF8.self)
        }
        let reports = text.components(separatedBy: "stuck for ").count - 1
        #expect(text.contains("s in request 7 (startContainer)"), "\(text)")
        #expect(reports >= 1 && reports <= 3, "one report per second while armed: \(text)")
        #expect(text.contains("agent \(getpid())"), "the agent's own wait")
        #expect(text.contains("child \(child)"), "its children's waits")
        #expect(text.contains("kernel log (last lines)"))
        // Disarmed: nothing more. sleep: nothing may be reported within this window (over a period)
        try await Task.sleep(for: .milliseconds(1200))
        #expect(Glibc.read(output.read, &buffer, buffer.count) <= 0)
    }

    /// A stream of short requests, one right after the other, is never reported: each arming has a
    /// report clock of its own.
    @Test func requestsInARowAreNotReported() async throws {
        let output = try WatchdogOutput()
        for i in 0..<30 {
            cocoon_watchdog_arm("request \(i) (writePort)", 1)
            // sleep: each request lasts 50 ms (the timing under test)
            try await Task.sleep(for: .milliseconds(50))
        }
        cocoon_watchdog_disarm()
        // sleep: nothing may be reported within this window
        try await Task.sleep(for: .milliseconds(300))
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        let n = Glibc.read(output.read, &buffer, buffer.count)
        #expect(n <= 0, "\(String(decoding: buffer[0..<max(0, n)], as: UTF8.self))")
    }
}
