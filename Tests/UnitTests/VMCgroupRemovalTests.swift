import Foundation
import Testing

@testable import Hypervisor

/// A VM's cgroup whose processes are still exiting is retried on an injected clock: a busy one is
/// given up after its tries (one second of the clock's time, no thread held), a free one goes at once.
@Suite struct VMCgroupRemovalTests {
    @Test func aBusyDirectoryIsRetriedOnTheClockThenLeft() async throws {
        let dir = NSTemporaryDirectory() + "cgroup-busy-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir + "/member", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }  // try?: a temp directory
        let clock = TestClock()
        let started = ContinuousClock.now
        let gone = await VMCgroup.removeDirectories([dir], clock: clock)
        #expect(!gone && FileManager.default.fileExists(atPath: dir), "rmdir of a non-empty directory fails")
        #expect(clock.sleepCount == VMCgroup.tries - 1)
        #expect(clock.now.offset == VMCgroup.retry * (VMCgroup.tries - 1))
        #expect(ContinuousClock.now - started < .milliseconds(500), "no real waiting")
    }

    @Test func aFreeDirectoryGoesAtOnceAndAMissingOneIsGone() async throws {
        let dir = NSTemporaryDirectory() + "cgroup-free-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let clock = TestClock()
        #expect(await VMCgroup.removeDirectories([dir, dir + "-never-made"], clock: clock))
        #expect(!FileManager.default.fileExists(atPath: dir) && clock.sleepCount == 0)
    }
}
