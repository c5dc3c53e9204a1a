import Foundation
import Logging
import Models
import Persistence
import Spawn

/// Decides between KVM and TCG, once per guest kernel, initramfs and QEMU binary, by booting the
/// real guest (`KVMProbe`). Each decision is kept with its reason in a JSON file under the state
/// root, so a restarted daemon does not probe again, and is logged once. A pod whose KVM boot fails
/// anyway reports it here (`noteKVMFailure`); `failuresToFlip` of them with no good KVM boot in
/// between make every later pod of that guest use TCG. A TCG decision is probed again once it is
/// `reprobeAfter` old (a slow moment or a since-fixed host does not mean TCG for good).
public actor Accelerator {
    public static let shared = Accelerator()
    /// Failed KVM pod boots in a row (no good one between) that flip a KVM decision to TCG.
    public static let failuresToFlip = 3
    /// How old a TCG decision may get before the next pod probes KVM again.
    public static let reprobeAfter = Duration.seconds(3600)

    /// One decision: what it applies to, the answer and why.
    public struct Decision: Codable, Sendable, Equatable {
        public var key: String
        public var kernel: String
        public var qemu: String
        public var accel: Accel
        public var reason: String
        public var decidedAtNs: Int64
        /// KVM pod boots that failed since the last good one (a KVM decision only).
        public var kvmFailures: Int?
        /// Why the last of them failed.
        public var lastFailure: String?
    }

    private var cacheFile: String?
    private var decisions: [String: Decision] = [:]
    private var probes: [String: Task<Decision, Never>] = [:]
    private var logger = Logger(label: "cocoon.accel")

    /// Where decisions are kept (`<state_root>/accel.json`); loads what an earlier daemon decided.
    public func configure(cacheFile: String, logger: Logger) {
        self.cacheFile = cacheFile
        self.logger = logger
        if let data = FileManager.default.contents(atPath: cacheFile),
            // try?: an unreadable cache only means probing again
            let saved = try? JSONDecoder().decode([Decision].self, from: data)
        {
            for d in saved { decisions[d.key] = d }
        }
    }

    /// Every decision made or loaded, for `Status` (verbose).
    public func known() -> [Decision] { decisions.values.sorted { $0.decidedAtNs < $1.decidedAtNs } }

    /// The accelerator a VM of this guest gets: `tcg` and `kvm` as asked (kvm only when the probe
    /// passed), `auto` as decided.
    public func resolve(_ request: Accel, qemu: String, kernel: String, initrd: String) async throws(HypervisorError)
        -> Accel
    {
        switch request {
        case .tcg: return .tcg
        case .kvm:
            let d = await decide(qemu: qemu, kernel: kernel, initrd: initrd)
            guard d.accel == .kvm else {
                throw .unavailable("accel=kvm requested but KVM cannot run the guest here: \(d.reason)")
            }
            return .kvm
        case .auto: return await decide(qemu: qemu, kernel: kernel, initrd: initrd).accel
        }
    }

    /// The decision for this guest, probing (once, shared by concurrent callers) when there is none.
    public func decide(qemu: String, kernel: String, initrd: String) async -> Decision {
        let key = Self.key(qemu: qemu, kernel: kernel, initrd: initrd)
        if let d = decisions[key], !isStale(d) { return d }
        if let running = probes[key] { return await running.value }
        let workDir = cacheFile.map { ($0 as NSString).deletingLastPathComponent } ?? NSTemporaryDirectory()
        let probe = Task { () -> Decision in
            let outcome = await KVMProbe.run(qemu: qemu, kernel: kernel, initrd: initrd, workDir: workDir)
            return Decision(
                key: key, kernel: kernel, qemu: qemu, accel: outcome.usable ? .kvm : .tcg, reason: outcome.reason,
                decidedAtNs: HostProcess.nowNs())
        }
        probes[key] = probe
        let d = await probe.value
        probes[key] = nil
        record(d)
        return d
    }

    /// A TCG decision old enough to be probed again.
    private func isStale(_ d: Decision) -> Bool {
        d.accel == .tcg && HostProcess.nowNs() - d.decidedAtNs > Self.reprobeAfter.nanoseconds
    }

    /// A KVM pod boot of this guest failed after the probe had passed. The `failuresToFlip`-th in a
    /// row makes later pods use TCG; fewer are counted and kept with the decision.
    func noteKVMFailure(qemu: String, kernel: String, initrd: String, reason: String) {
        let key = Self.key(qemu: qemu, kernel: kernel, initrd: initrd)
        let now = HostProcess.nowNs()
        var d =
            decisions[key]
            ?? Decision(key: key, kernel: kernel, qemu: qemu, accel: .kvm, reason: "not probed", decidedAtNs: now)
        guard d.accel == .kvm else { return }
        let failures = (d.kvmFailures ?? 0) + 1
        guard failures >= Self.failuresToFlip else {
            d.kvmFailures = failures
            d.lastFailure = reason
            decisions[key] = d
            logger.warning(
                "a pod VM failed under KVM; pods keep using KVM until \(Self.failuresToFlip) fail in a row",
                metadata: ["kernel": "\(kernel)", "failures": "\(failures)", "why": "\(reason)"])
            save()
            return
        }
        record(
            Decision(
                key: key, kernel: kernel, qemu: qemu, accel: .tcg,
                reason: "\(failures) pod VMs in a row failed under KVM; the last: \(reason)", decidedAtNs: now))
    }

    /// How a KVM pod boot of this guest went: nil when it reached its guest, else why not.
    public func note(qemu: String, kernel: String, initrd: String, failure: String?) {
        if let failure {
            noteKVMFailure(qemu: qemu, kernel: kernel, initrd: initrd, reason: failure)
        } else {
            noteKVMBoot(qemu: qemu, kernel: kernel, initrd: initrd)
        }
    }

    /// A KVM pod boot of this guest reached its guest: earlier failures no longer count.
    func noteKVMBoot(qemu: String, kernel: String, initrd: String) {
        let key = Self.key(qemu: qemu, kernel: kernel, initrd: initrd)
        guard var d = decisions[key], d.kvmFailures != nil else { return }
        d.kvmFailures = nil
        d.lastFailure = nil
        decisions[key] = d
        save()
    }

    private func record(_ d: Decision) {
        decisions[d.key] = d
        if d.accel == .kvm {
            logger.info(
                "KVM runs the guest; pod VMs use KVM", metadata: ["kernel": "\(d.kernel)", "why": "\(d.reason)"])
        } else {
            logger.warning(
                "KVM cannot run the guest; pod VMs use TCG (software emulation)",
                metadata: ["kernel": "\(d.kernel)", "why": "\(d.reason)"])
        }
        save()
    }

    private func save() {
        guard let cacheFile else { return }
        do {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try AtomicFile.write(try encoder.encode(known()), to: cacheFile)
        } catch {
            logger.warning(
                "cannot save the accelerator decision", metadata: ["file": "\(cacheFile)", "error": "\(error)"])
        }
    }

    /// Identifies the inputs a decision depends on: the guest kernel and initramfs, the QEMU binary
    /// (path, size, modification time each) and the host kernel release. Any change means a new probe.
    public static func key(qemu: String, kernel: String, initrd: String) -> String {
        func id(_ path: String) -> String {
            var st = stat()
            guard stat(path, &st) == 0 else { return path + ":missing" }
            return "\(path):\(st.st_size):\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)"
        }
        var uts = utsname()
        uname(&uts)
        let release = withUnsafeBytes(of: &uts.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        return [id(kernel), id(initrd), id(qemu), "host:" + release].joined(separator: "|")
    }
}
