import BootContract

/// The guest kernel command line Cocoon boots with. The tsc arguments are needed for microvm under
/// TCG (without them the kernel hangs calibrating the TSC), with the host's real rate (`HostTSC`);
/// `panic=-1` turns a guest panic into a VM exit instead of a hang; the `cocoon.*` arguments
/// (`BootContract`) tell the agent how to reach the host. `cryptomgr.notests` skips the crypto
/// algorithms' boot self-tests and `no_timer_check` the IO-APIC timer check (no mitigation is
/// touched): 0.25 s of every cold boot under TCG (`scripts/bench sandbox`).
public enum GuestKernelArgs {
    public static func make(
        transport: AgentEndpoint, bus: BootContract.Bus, pciOff: Bool, extra: String, tscKHz: Int = HostTSC.khz
    ) -> String {
        var args = [
            "console=ttyS0", "quiet", "tsc_early_khz=\(tscKHz)", "tsc=reliable", "panic=-1", "cryptomgr.notests",
            "no_timer_check",
        ]
        if pciOff { args.append("pci=off") }
        let settings: BootContract.Settings
        switch transport {
        case .serial: settings = .init(transport: .serial, bus: bus)
        case .vsock(_, let port): settings = .init(transport: .vsock, vsockPort: port, bus: bus)
        }
        args += settings.arguments
        if !extra.isEmpty { args.append(extra) }
        return args.joined(separator: " ")
    }

    /// The kernel command line of the KVM probe: /init prints `BootContract.probeMarker` and powers off.
    public static let probe = "console=ttyS0 quiet panic=-1 pci=off \(BootContract.Key.probe.rawValue)=1"
}
