import BootContract
import CAgentSys

/// The VM's agent token: given by the host through QEMU's fw_cfg (never on the kernel command
/// line, which every host user can read in QEMU's arguments), read once at boot.
enum AgentToken {
    /// The token, or nil when the VM was given none (every session is then refused).
    static func read() -> [UInt8]? {
        if let host = HostMode.current { return host.readToken(count: BootContract.agentTokenBytes) }
        var buffer = [UInt8](repeating: 0, count: BootContract.agentTokenBytes)
        let size = cocoon_fwcfg_read(BootContract.agentTokenFwCfgName, &buffer, Int32(buffer.count))
        switch size {
        case Int32(BootContract.agentTokenBytes):
            return buffer
        case -2:
            log("no fw_cfg device: no agent token, every host session will be refused")
        case -1:
            log("fw_cfg has no \(BootContract.agentTokenFwCfgName): every host session will be refused")
        default:
            log("the agent token has \(size) bytes, not \(BootContract.agentTokenBytes): every session will be refused")
        }
        return nil
    }
}
