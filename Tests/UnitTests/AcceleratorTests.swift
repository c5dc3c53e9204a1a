import Foundation
import Testing

@testable import Hypervisor

/// One bad KVM boot (a slow moment on a loaded host) does not send every later pod to TCG for good:
/// it takes `failuresToFlip` in a row, a good boot forgets them, and a TCG decision is probed again
/// once it is old.
@Suite struct AcceleratorTests {
    let dir = NSTemporaryDirectory() + "accel-\(UUID().uuidString)"
    var cache: String { dir + "/accel.json" }
    let qemu = "/bin/true"
    var kernel: String { dir + "/vmlinuz" }
    var initrd: String { dir + "/initrd" }

    /// An accelerator that loaded `decision` from its file, as a restarted daemon does.
    func accelerator(seeded accel: String, decidedAtNs: Int64) async throws -> Accelerator {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let key = Accelerator.key(qemu: qemu, kernel: kernel, initrd: initrd)
        let seeded: [[String: Any]] = [
            [
                "key": key, "kernel": kernel, "qemu": qemu, "accel": accel, "reason": "seeded",
                "decidedAtNs": decidedAtNs,
            ]
        ]
        try JSONSerialization.data(withJSONObject: seeded).write(to: URL(fileURLWithPath: cache))
        let accelerator = Accelerator()
        await accelerator.configure(cacheFile: cache, logger: .init(label: "test"))
        return accelerator
    }

    @Test func itTakesFailuresInARowToFlipKVMToTCG() async throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let a = try await accelerator(seeded: "kvm", decidedAtNs: Int64(Date().timeIntervalSince1970 * 1e9))
        for n in 1..<Accelerator.failuresToFlip {
            await a.note(qemu: qemu, kernel: kernel, initrd: initrd, failure: "stalled \(n)")
            let d = await a.decide(qemu: qemu, kernel: kernel, initrd: initrd)
            #expect(d.accel == .kvm, "one slow boot must not flip the decision (after \(n))")
            #expect(d.kvmFailures == n && d.lastFailure == "stalled \(n)")
        }
        // A good boot forgets them.
        await a.note(qemu: qemu, kernel: kernel, initrd: initrd, failure: nil)
        #expect(await a.decide(qemu: qemu, kernel: kernel, initrd: initrd).kvmFailures == nil)
        for n in 1...Accelerator.failuresToFlip {
            await a.note(qemu: qemu, kernel: kernel, initrd: initrd, failure: "stalled \(n)")
        }
        let flipped = await a.decide(qemu: qemu, kernel: kernel, initrd: initrd)
        #expect(flipped.accel == .tcg)
        #expect(flipped.reason.contains("\(Accelerator.failuresToFlip) pod VMs in a row failed under KVM"))
        // Kept for a restarted daemon, with the count.
        let restarted = Accelerator()
        await restarted.configure(cacheFile: cache, logger: .init(label: "test"))
        #expect(await restarted.decide(qemu: qemu, kernel: kernel, initrd: initrd).accel == .tcg)
    }

    @Test func anOldTCGDecisionIsProbedAgain() async throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let a = try await accelerator(seeded: "tcg", decidedAtNs: 1)
        // The probe runs again (here it fails at once: there is no guest kernel to boot).
        let d = await a.decide(qemu: qemu, kernel: kernel, initrd: initrd)
        #expect(d.reason != "seeded" && d.decidedAtNs > 1, "\(d)")
        // A fresh TCG decision is kept.
        let fresh = try await accelerator(seeded: "tcg", decidedAtNs: Int64(Date().timeIntervalSince1970 * 1e9))
        #expect(await fresh.decide(qemu: qemu, kernel: kernel, initrd: initrd).reason == "seeded")
    }
}
