import Config
import Foundation
import Models

/// What the host offers pod VMs and native pods: KVM (and the daemon's real-boot decision on it),
/// vhost-vsock, virtiofsd, QEMU, cgroups, iptables.
enum HostChecks {
    /// One real-boot decision on KVM (cocoond's `Status` `accelerator`, or its `accel.json`).
    struct KVMDecision: Equatable {
        var accel: String
        var reason: String?
        var decidedAtNs: Int64

        /// The decisions in a JSON list of either spelling (`decided_at_ns` in Status, `decidedAtNs`
        /// in the daemon's cache); none for anything else.
        static func list(fromJSON data: Data) -> [KVMDecision] {
            // try?: not a list of decisions: none
            let entries = (try? JSONSerialization.jsonObject(with: data)) as? [[String: Any]] ?? []
            return entries.compactMap { entry in
                guard let accel = entry["accel"] as? String else { return nil }
                let at = (entry["decided_at_ns"] ?? entry["decidedAtNs"]) as? NSNumber
                return KVMDecision(accel: accel, reason: entry["reason"] as? String, decidedAtNs: at?.int64Value ?? 0)
            }
        }
    }

    /// /dev/kvm, and whether the guest really runs on it: the decision of the daemon's real boot
    /// (a /dev/kvm that opens may still fail to run a guest, as on nested hosts).
    static func kvm(device: String = "/dev/kvm", decisions: [KVMDecision], source: String) -> DoctorCheck {
        guard FileManager.default.fileExists(atPath: device) else {
            return .warn(
                "kvm", "no \(device): pod VMs run under TCG (software emulation, several times slower)",
                "enable hardware virtualization and load kvm_intel or kvm_amd")
        }
        let fd = open(device, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else {
            return .warn(
                "kvm", "\(device) does not open: \(String(cString: strerror(errno))); pod VMs run under TCG",
                "make \(device) usable by root (check its mode and the kvm module)")
        }
        close(fd)
        guard let latest = decisions.max(by: { $0.decidedAtNs < $1.decidedAtNs }) else {
            return .warn(
                "kvm", "\(device) opens; no real boot has tried it yet",
                "start cocoond: it boots the guest once under KVM and falls back to TCG if that fails")
        }
        if latest.accel == "kvm" { return .ok("kvm", "\(device) runs the guest (\(source))") }
        return .warn(
            "kvm", "\(device) opens but cannot run the guest (\(source)): \(latest.reason ?? "no reason recorded")",
            "pod VMs run under TCG; fix the host's KVM (nested virtualization, CPU model) for full speed")
    }

    /// The decisions `cocoond` keeps in `<state_root>/accel.json`.
    static func savedDecisions(stateRoot: String) -> [KVMDecision] {
        guard let data = FileManager.default.contents(atPath: stateRoot + "/accel.json") else { return [] }
        return KVMDecision.list(fromJSON: data)
    }

    static func vsock(device: String = "/dev/vhost-vsock") -> DoctorCheck {
        FileManager.default.fileExists(atPath: device)
            ? .ok("vhost-vsock", "\(device) is there: agents are reached over vsock")
            : .warn(
                "vhost-vsock", "no \(device): agents are reached over virtio-serial instead",
                "modprobe vhost_vsock (vsock is faster to connect; virtio-serial works)")
    }

    static func virtiofsd(_ config: CocoonConfig, binary: String = "/usr/lib/qemu/virtiofsd") -> DoctorCheck {
        let sharing = config.handlers.filter { $0.value.backend.isVM && $0.value.sharedFS == .virtioFS }.keys.sorted()
        if FileManager.default.isExecutableFile(atPath: binary) { return .ok("virtiofsd", binary) }
        if sharing.isEmpty { return .ok("virtiofsd", "not needed: no handler shares volumes over virtio-fs") }
        return .fail(
            "virtiofsd", "\(binary) is missing; handlers \(sharing.joined(separator: ", ")) share volumes with it",
            "apt-get install qemu-system-common (or set shared_fs = \"none\" in those handlers)")
    }

    static func qemu(_ config: CocoonConfig, binary: String = "/usr/bin/qemu-system-x86_64") -> DoctorCheck {
        let vms = config.handlers.filter { $0.value.backend == .qemu }.keys.sorted()
        if FileManager.default.isExecutableFile(atPath: binary) { return .ok("qemu", binary) }
        if vms.isEmpty { return .ok("qemu", "not needed: no handler uses the qemu backend") }
        return .fail(
            "qemu", "\(binary) is missing; handlers \(vms.joined(separator: ", ")) boot with it",
            "apt-get install qemu-system-x86")
    }

    /// cgroup v2 with the controllers pods need, or a v1/hybrid host (supported; the kubelet must
    /// then use the same driver); the kubelet's driver is the one cocoond's RuntimeConfig names.
    static func cgroups(_ configured: CgroupDriver, root: String = "/sys/fs/cgroup") -> DoctorCheck {
        let booted = FileManager.default.fileExists(atPath: "/run/systemd/system")
        let why =
            configured != .auto ? "configured" : booted ? "systemd runs the host" : "systemd does not run the host"
        let driver = "kubelet cgroupDriver: \(configured.forKubelet(systemdBooted: booted).rawValue) (\(why))"
        if let text = try? String(contentsOfFile: root + "/cgroup.controllers", encoding: .utf8) {
            let controllers = Set(text.split(whereSeparator: \.isWhitespace).map(String.init))
            let missing = ["cpu", "memory", "pids"].filter { !controllers.contains($0) }
            if missing.isEmpty { return .ok("cgroups", "v2 with cpu, memory, pids; \(driver)") }
            return .fail(
                "cgroups", "v2 without \(missing.joined(separator: ", ")): pods' limits cannot be applied",
                "enable the controllers in the kernel (cgroup_enable=...) or on the root's subtree_control")
        }
        let v1 = ["cpu", "memory", "pids"].filter { FileManager.default.fileExists(atPath: root + "/" + $0 + "/tasks") }
        if v1.count == 3 {
            return .warn(
                "cgroups", "v1 (hybrid) with cpu, memory, pids; \(driver)",
                "supported; cgroup v2 is what the kubelet aims at (systemd.unified_cgroup_hierarchy=1)")
        }
        return .fail(
            "cgroups", "no usable cgroup hierarchy under \(root)", "mount cgroup2 at \(root) (or the v1 controllers)")
    }

    /// iptables answers (the bridge plugin's masquerade and portmap's rules need it).
    static func iptables() -> DoctorCheck {
        let candidates = ["/usr/sbin/iptables", "/sbin/iptables", "/usr/bin/iptables"]
        guard let binary = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            return .fail(
                "iptables", "not installed", "apt-get install iptables (CNI's bridge and portmap plugins use it)")
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = ["-w", "5", "-t", "nat", "-S", "POSTROUTING"]
        p.standardOutput = FileHandle.nullDevice
        let errors = Pipe()
        p.standardError = errors
        do {
            try p.run()
        } catch {
            return .fail("iptables", "\(binary) does not run: \(error)", "reinstall iptables")
        }
        let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            return .fail(
                "iptables", "\(binary) -t nat fails: \(message.trimmingCharacters(in: .whitespacesAndNewlines))",
                "load the nat table's module (iptable_nat or nf_tables) and run doctor as root")
        }
        return .ok("iptables", "\(binary) answers (nat table)")
    }
}
