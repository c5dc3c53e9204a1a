import CRIAPI
import Foundation
import GRPCCore
import Testing

/// `cocoonctl doctor` on this host, beside a running daemon after it booted a pod VM: what it says
/// of KVM is the daemon's own real-boot decision (this machine has a /dev/kvm that cannot run the
/// guest: doctor must say so; on a host where KVM works it says ok), and the daemon's socket, CNI
/// config, QEMU, virtiofsd and guest image are found as they are.
@Suite(
    .serialized,
    .enabled(
        if: DaemonHarness.enabled && TestImages.available, "needs the guest image and the test registry (scripts/test)")
)
struct DoctorOnThisHostTests {
    @Test func doctorTellsTheTruthAboutThisHost() async throws {
        try await withDaemon { daemon in
            let accel = try await daemon.withRuntime { rt in
                try await withTestPod(rt, podConfig("doctor-\(UInt32.random(in: 0...UInt32.max))")) { _ in }
                return try await rt.status(.with { $0.verbose = true }).info["accelerator"] ?? ""
            }
            let decisions = (try JSONSerialization.jsonObject(with: Data(accel.utf8)) as? [[String: Any]]) ?? []
            func at(_ d: [String: Any]) -> Int64 { (d["decided_at_ns"] as? NSNumber)?.int64Value ?? 0 }
            let latest = decisions.max { at($0) < at($1) }
            let ctl = CocoonCtl(socket: daemon.socket)
            let doctor = try await runCommand([ctl.binary, "doctor", "--config", daemon.root + "/config.toml"])
            print("cocoonctl doctor:\n\(doctor.out)")
            let lines = doctor.out.split(separator: "\n").map(String.init)
            func line(_ name: String) -> String {
                lines.first { $0.dropFirst(6).hasPrefix(name + " ") } ?? "no \(name) line in: \(doctor.out)"
            }
            let kvm = line("kvm")
            if !FileManager.default.fileExists(atPath: "/dev/kvm") {
                #expect(kvm.hasPrefix("warn") && kvm.contains("no /dev/kvm"), "\(kvm)")
            } else if latest?["accel"] as? String == "kvm" {
                #expect(kvm.hasPrefix("ok"), "the daemon runs guests on KVM: \(kvm)")
            } else {
                let reason = latest?["reason"] as? String ?? "?"
                #expect(kvm.hasPrefix("warn") && kvm.contains("cannot run the guest"), "\(kvm)")
                #expect(kvm.contains(String(reason.prefix(40))), "the daemon's reason: \(reason); doctor: \(kvm)")
                #expect(kvm.contains("cocoond's real boot"), "\(kvm)")
            }
            for name in ["qemu", "virtiofsd", "cni", "iptables", "guest image", "socket"] {
                #expect(line(name).hasPrefix("ok"), "\(line(name))")
            }
            #expect(line("cni").contains(daemon.root + "/net.d"))
            #expect(line("socket").contains(daemon.socket))
            let failed = lines.contains { $0.hasPrefix("fail") }
            #expect(doctor.code == (failed ? 1 : 0), "\(doctor.out)")
        }
    }
}
