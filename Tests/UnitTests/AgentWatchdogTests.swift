import CAgentSys
import Foundation
import Glibc
import Testing

/// The guest agent's hung-request detector, run on the host: work that stays armed is reported
/// with its name, the agent's kernel wait and the kernel's last messages, again every period, and
/// nothing is said once it is disarmed. Serialized: the detector is one per process.
@Suite(.serialized) struct AgentWatchdogTests {
    @Test func aStuckRequestIsReportedUntilItEnds() async throws {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        _ = fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK)
        defer {
            close(fds[0])
            close(fds[1])
        }
        cocoon_watchdog_install(fds[1])
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
        try await Task.sleep(for: .milliseconds(2500))
        cocoon_watchdog_disarm()
        try await Task.sleep(for: .milliseconds(1200))
        var text = ""
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = read(fds[0], &buffer, buffer.count)
            guard n > 0 else { break }
            text += String(decoding: buffer[0..<n], as: UTF8.self)
        }
        let reports = text.components(separatedBy: "stuck for ").count - 1
        #expect(text.contains("s in request 7 (startContainer)"), "\(text)")
        #expect(reports >= 1 && reports <= 3, "one report per second while armed: \(text)")
        #expect(text.contains("agent \(getpid())"), "the agent's own wait")
        #expect(text.contains("child \(child)"), "its children's waits")
        #expect(text.contains("kernel log (last lines)"))
        // Disarmed: nothing more.
        try await Task.sleep(for: .milliseconds(1200))
        #expect(read(fds[0], &buffer, buffer.count) <= 0)
    }

    /// A stream of short requests, one right after the other, is never reported: each arming has a
    /// report clock of its own.
    @Test func requestsInARowAreNotReported() async throws {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        _ = fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK)
        defer {
            close(fds[0])
            close(fds[1])
        }
        cocoon_watchdog_install(fds[1])
        for i in 0..<30 {
            cocoon_watchdog_arm("request \(i) (writePort)", 1)
            try await Task.sleep(for: .milliseconds(50))
        }
        cocoon_watchdog_disarm()
        try await Task.sleep(for: .milliseconds(300))
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        let n = read(fds[0], &buffer, buffer.count)
        #expect(n <= 0, "\(String(decoding: buffer[0..<max(0, n)], as: UTF8.self))")
    }
}
