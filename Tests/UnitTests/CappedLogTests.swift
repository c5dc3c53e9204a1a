import Foundation
import Testing

@testable import Spawn

/// A helper's log (virtiofsd's, which a guest can make it fill) stops at its cap, and the helper
/// writing past it lives on: its writes fail instead of killing it.
@Suite struct CappedLogTests {
    @Test func aWriterCannotGrowTheLogPastItsCapAndLivesOn() async throws {
        let dir = NSTemporaryDirectory() + "capped-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = try CappedLog.open(dir + "/log", limit: 65536)
        let writer = try VMProcess.start(
            ["/bin/sh", "-c", "head -c 3000000 /dev/zero; echo alive > \(dir)/marker"],
            VMProcess.Launch(uid: 0, gid: 0, keep: [], output: log.fd, ignoreSIGPIPE: true))
        close(log.fd)
        // Known by their start times: right after the fork a child may not have exec'd yet, so its
        // command line is still the test's.
        let (writerStart, copierStart) = (HostProcess.startTicks(writer), HostProcess.startTicks(log.copier))
        let gone = await HostProcess.waitGone(pid: writer, marker: "", startTicks: writerStart, timeout: .seconds(20))
        let copierGone = await HostProcess.waitGone(
            pid: log.copier, marker: "", startTicks: copierStart, timeout: .seconds(20))
        #expect(writerStart != nil && copierStart != nil && gone && copierGone)
        #expect(FileManager.default.fileExists(atPath: dir + "/marker"), "the writer died at the cap")
        let size = (try FileManager.default.attributesOfItem(atPath: dir + "/log")[.size] as? Int) ?? -1
        #expect(size == 65536)
    }
}
