/// The guest kernel command line Cocoon boots with. The tsc arguments are needed for microvm under
/// TCG (without them the kernel hangs calibrating the TSC), with the host's real rate (`HostTSC`); `panic=-1` turns a guest panic into a
/// VM exit instead of a hang; the `cocoon.*` arguments tell the agent how to reach the host.
public enum GuestKernelArgs {
    public static func make(transport: AgentEndpoint, bus: String, pciOff: Bool, extra: String, tscKHz: Int = HostTSC.khz) -> String {
        var args = ["console=ttyS0", "quiet", "tsc_early_khz=\(tscKHz)", "tsc=reliable", "panic=-1"]
        if pciOff { args.append("pci=off") }
        switch transport {
        case .serial: args.append("cocoon.transport=serial")
        case .vsock(_, let port): args += ["cocoon.transport=vsock", "cocoon.vsock_port=\(port)"]
        }
        args.append("cocoon.bus=\(bus)")
        if !extra.isEmpty { args.append(extra) }
        return args.joined(separator: " ")
    }

    /// The virtio-serial port name the agent looks for.
    public static let agentPortName = "cocoon.agent"
    /// The vsock port the agent listens on.
    public static let agentVsockPort: UInt32 = 1024
}
