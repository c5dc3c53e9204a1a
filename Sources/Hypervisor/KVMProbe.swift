import BootContract
import Foundation
import Models
import Spawn

/// Decides whether KVM can run *our* guest by booting it: the real guest kernel and initramfs under
/// `accel=kvm` with `cocoon.probe` on the command line, which makes the guest's /init print
/// `marker` on the console and power off at once. A paused QEMU that starts and quits is not
/// enough: a PVM-backed /dev/kvm passes that and then never runs a single guest instruction.
public enum KVMProbe {
    public static let marker = BootContract.probeMarker
    /// A KVM boot to /init takes well under a second; TCG takes 2-5 s. Past this, KVM is not working.
    public static let deadline: Duration = .seconds(6)

    public struct Outcome: Sendable, Equatable {
        public var usable: Bool
        public var reason: String
    }

    public static func run(qemu: String, kernel: String, initrd: String, workDir: String) async -> Outcome {
        guard FileManager.default.fileExists(atPath: "/dev/kvm") else {
            return Outcome(usable: false, reason: "/dev/kvm does not exist")
        }
        guard access("/dev/kvm", R_OK | W_OK) == 0 else {
            return Outcome(usable: false, reason: "/dev/kvm is not readable and writable by cocoond")
        }
        for (what, path) in [("kernel", kernel), ("initrd", initrd)] where !FileManager.default.fileExists(atPath: path)
        {
            return Outcome(usable: false, reason: "guest \(what) \(path) does not exist; cannot probe KVM")
        }
        // try?: if it cannot be made, QEMU's own error is reported
        try? FileManager.default.createDirectory(atPath: workDir, withIntermediateDirectories: true)
        let console = workDir + "/kvm-probe-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).log"
        defer { unlink(console) }
        let started = ContinuousClock.now
        let result: HostProcess.Result
        do {
            result = try await HostProcess.run(
                arguments(qemu: qemu, kernel: kernel, initrd: initrd, console: console), timeout: deadline)
        } catch {
            return Outcome(usable: false, reason: "cannot start \(qemu) for the KVM probe: \(error)")
        }
        let elapsed = ContinuousClock.now - started
        let text = String(
            decoding: (FileManager.default.contents(atPath: console) ?? Data()).suffix(4096), as: UTF8.self)
        return judge(console: text, status: result.status, output: result.output, elapsed: elapsed)
    }

    /// The verdict from what the probe VM left behind (pure: unit-tested).
    static func judge(console: String, status: Int32, output: String, elapsed: Duration) -> Outcome {
        let ms = Int(elapsed.milliseconds)
        if console.contains(marker) {
            return Outcome(usable: true, reason: "the guest kernel booted to /init under KVM in \(ms) ms")
        }
        let qemuSaid = output.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "\n").suffix(3).joined(
            separator: " | ")
        let lastConsole =
            console.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "\n").last.map(String.init) ?? ""
        var reason: String
        if status == 137 || elapsed >= deadline {
            reason = "the guest kernel did not reach /init under KVM within \(deadline)"
        } else {
            reason = "QEMU exited with status \(status) before the guest reached /init under KVM"
        }
        if !qemuSaid.isEmpty { reason += "; qemu: \(qemuSaid)" }
        reason +=
            lastConsole.isEmpty ? "; the guest printed nothing" : "; last console line: \(lastConsole.prefix(160))"
        return Outcome(usable: false, reason: reason)
    }

    static func arguments(qemu: String, kernel: String, initrd: String, console: String) -> [String] {
        [
            qemu, "-name", "cocoon-kvm-probe,process=cocoon-kvm-probe",
            "-M", "microvm,accel=kvm,rtc=on", "-cpu", "host", "-smp", "1", "-m", "128M",
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-kernel", kernel, "-initrd", initrd,
            "-append", GuestKernelArgs.probe,
            "-serial", "file:\(console)",
        ]
    }
}
