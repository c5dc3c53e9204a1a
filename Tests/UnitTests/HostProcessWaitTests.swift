import Foundation
import Glibc
import Spawn
import Testing

/// Host helpers are awaited through pidfds: a helper that outlives its deadline is killed at the
/// deadline (not a poll later), a quick one is reaped as soon as it exits, and `waitGone` returns
/// when the process ends, with no thread of the cooperative pool held meanwhile.
@Suite struct HostProcessWaitTests {
    @Test func aHelperIsKilledAtItsDeadlineAndAQuickOneReapedAtOnce() async throws {
        let clock = ContinuousClock()
        var started = clock.now
        let slow = try await HostProcess.run(["/bin/sleep", "30"], timeout: .milliseconds(300))
        let slowTook = clock.now - started
        #expect(slow.status == 128 + SIGKILL, "killed at the deadline")
        #expect(slowTook >= .milliseconds(300) && slowTook < .seconds(3), "\(slowTook)")
        started = clock.now
        let quick = try await HostProcess.run(["/bin/sh", "-c", "echo done; exit 3"], timeout: .seconds(30))
        #expect(quick.status == 3 && quick.output == "done\n")
        #expect(clock.now - started < .seconds(3))
    }

    @Test func waitGoneReturnsWhenTheProcessEnds() async throws {
        let child = fork()
        if child == 0 {
            usleep(400_000)  // sleep: a child that lives 400 ms
            _exit(0)
        }
        let ticks = HostProcess.startTicks(child)
        let clock = ContinuousClock()
        let started = clock.now
        let gone = await HostProcess.waitGone(pid: child, marker: "", startTicks: ticks, timeout: .seconds(20))
        #expect(gone, "our child ended (and was reaped)")
        #expect(clock.now - started < .seconds(5))
        var status: Int32 = 0
        #expect(waitpid(child, &status, WNOHANG) == -1 && errno == ECHILD, "already reaped")
        // A process still running past the timeout: false.
        let sleeper = fork()
        if sleeper == 0 {
            pause()
            _exit(0)
        }
        defer {
            kill(sleeper, SIGKILL)
            waitpid(sleeper, &status, 0)
        }
        let stillThere = await HostProcess.waitGone(
            pid: sleeper, marker: "", startTicks: HostProcess.startTicks(sleeper), timeout: .milliseconds(200))
        #expect(!stillThere)
    }
}
