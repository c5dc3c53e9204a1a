import Foundation

/// Decides between KVM and TCG. `/dev/kvm` existing is not enough (nested or restricted KVM can
/// refuse vCPU setup), so the probe starts a paused QEMU with KVM and asks it to quit over QMP;
/// KVM counts as usable only if that works cleanly. The answer is cached for the daemon's life.
public actor Accelerator {
    public static let shared = Accelerator()
    private var probed: Bool?

    public func kvmUsable(qemu: String) async -> Bool {
        if let probed { return probed }
        let result = await Self.probe(qemu: qemu)
        probed = result
        return result
    }

    public func resolve(_ request: AccelRequest, qemu: String) async throws(HypervisorError) -> String {
        switch request {
        case .tcg: return "tcg"
        case .kvm:
            guard await kvmUsable(qemu: qemu) else { throw .unavailable("accel=kvm requested but /dev/kvm is not usable here") }
            return "kvm"
        case .auto: return await kvmUsable(qemu: qemu) ? "kvm" : "tcg"
        }
    }

    private static func probe(qemu: String) async -> Bool {
        guard access("/dev/kvm", R_OK | W_OK) == 0 else { return false }
        let script = "printf '%s' '{\"execute\":\"qmp_capabilities\"}{\"execute\":\"quit\"}' | "
            + "\(qemu) -M microvm,accel=kvm -cpu host -m 64 -S -nodefaults -no-user-config -display none -qmp stdio"
        guard let r = try? await HostProcess.run(["/bin/sh", "-c", script], timeout: .seconds(10)) else { return false }
        let lower = r.output.lowercased()
        return r.status == 0 && !lower.contains("error") && !lower.contains("assert") && lower.contains("return")
    }
}
