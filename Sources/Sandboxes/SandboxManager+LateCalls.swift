import AgentClient
import Hypervisor

/// An agent call that has waited `SandboxManager.lateAfter` without an answer.
public struct LateCall: Sendable {
    let podID: String
    let call: String
}

/// Late agent calls: what the pod's VM is doing then is logged, and a VM that is running is kicked
/// (paused and resumed at once). Under TCG (QEMU 7.2) a guest was seen asleep with its vCPU halted
/// while a request the host had sent waited in its queue, until some other event woke it, often
/// after the host's 30 s deadline; a pause and resume wakes every vCPU and QEMU's own loop.
extension SandboxManager {
    /// Well past what a request takes on a loaded node, well before the 30 s deadline.
    static let lateAfter: Duration = .seconds(8)

    /// Keeps the pod's agent and has its late calls reported to `watchLateCalls`.
    func keep(_ agent: any GuestAgent, for id: String) {
        agents[id] = agent
        guard let client = agent as? AgentClient else { return }
        let input = lateCallInput
        client.onLateCalls(after: Self.lateAfter) { input.yield(LateCall(podID: id, call: $0)) }
    }

    /// Looks at each late call's VM, one at a time, until the daemon ends the stream
    /// (`endAgentEvents`).
    public func watchLateCalls() async {
        for await late in lateCalls {
            guard let report = await stallReport(late.podID) else { continue }
            let kicked = await kick(late.podID)
            logger.warning(
                "a pod's agent call is late; its VM \(kicked ? "was kicked" : "was left as it is")",
                metadata: ["id": "\(late.podID)", "call": "\(late.call)", "vm": "\(report)"])
        }
    }

    /// What the pod's VM is doing while its agent does not answer (see `Hypervisor.stallReport`).
    public func stallReport(_ podID: String) async -> String? {
        guard let vm = records[podID]?.vm, let hypervisor = hypervisors[vm.backend] else { return nil }
        return await hypervisor.stallReport(vm)
    }

    private func kick(_ podID: String) async -> Bool {
        guard let vm = records[podID]?.vm, let hypervisor = hypervisors[vm.backend] else { return false }
        return await hypervisor.kick(vm)
    }
}
