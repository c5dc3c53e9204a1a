import ArgumentParser
import CRIAPI
import Config
import Foundation
import GRPCCore

/// `cocoonctl doctor`: checks the host as an operator would before joining it to a cluster, from
/// the daemon's configuration file (and the running daemon's own view of KVM when it answers).
/// Prints ok / warn / fail per check with one line of advice; exit status 1 on any fail.
struct Doctor: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Check this host for Cocoon: KVM, vsock, virtiofsd, cgroups, CNI, iptables, guest image, disk, socket.")
    @Option(help: "cocoond's configuration file (TOML).") var config: String = "/etc/cocoon/config.toml"

    func run() async throws {
        let cfg: CocoonConfig
        do {
            cfg = try ConfigLoader.load(path: config, required: config != "/etc/cocoon/config.toml")
        } catch {
            print(DoctorReport.render([.fail("config", "\(config): \(error)", "fix the configuration file")]))
            throw ExitCode(1)
        }
        let checks = await Self.checks(cfg)
        print(DoctorReport.render(checks))
        let code = DoctorReport.exitCode(checks)
        if code != 0 { throw ExitCode(code) }
    }

    /// Every check, in the order an operator reads them.
    static func checks(_ cfg: CocoonConfig) async -> [DoctorCheck] {
        let (decisions, source) = await kvmDecisions(cfg)
        return [
            HostChecks.kvm(decisions: decisions, source: source), HostChecks.vsock(), HostChecks.qemu(cfg),
            HostChecks.virtiofsd(cfg), HostChecks.cgroups(cfg.cgroupDriver), NodeChecks.cni(cfg), HostChecks.iptables(),
            NodeChecks.guestImage(cfg), NodeChecks.disk(cfg), NodeChecks.socket(cfg.socket),
        ]
    }

    /// The real-boot decisions on KVM: the running daemon's (Status, verbose), else those it saved.
    static func kvmDecisions(_ cfg: CocoonConfig) async -> ([HostChecks.KVMDecision], String) {
        var options = CallOptions.defaults
        options.timeout = .seconds(5)
        var request = Runtime_V1_StatusRequest()
        request.verbose = true
        // try?: no daemon answering: its saved decisions are read instead
        let status = try? await Endpoint(parsing: "unix://" + cfg.socket).withClients { rt, _ in
            try await rt.status(request, options: options)
        }
        if let text = status?.info["accelerator"] {
            return (HostChecks.KVMDecision.list(fromJSON: Data(text.utf8)), "cocoond's real boot")
        }
        return (HostChecks.savedDecisions(stateRoot: cfg.stateRoot), "the last real boot, from accel.json")
    }
}
