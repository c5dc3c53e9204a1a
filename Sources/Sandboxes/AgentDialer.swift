import AgentClient
import Errors
import Foundation
import Hypervisor

/// Opens a VM's agent once its guest has booted: the connector (the real channel, or a fake in unit
/// tests) and how long a boot may take. Shared by the pod manager and the VM factory.
struct AgentDialer: Sendable {
    let connect: GuestAgentConnector
    let bootTimeout: Duration

    /// Connects to the VM's agent once it answers (within the boot timeout), checking its API version.
    func dial(
        _ vm: VMHandle, hypervisor: any Hypervisor, token: [UInt8],
        link: (credit: EventCredit, forward: @Sendable (AgentEvent) -> Void)
    ) async throws(CocoonError) -> (any GuestAgent, GuestHealth) {
        let clock = ContinuousClock()
        let deadline = clock.now + bootTimeout
        var lastError = "no answer"
        while clock.now < deadline {
            if Task.isCancelled { throw .unavailable("waiting for the agent of \(vm.name) was cancelled") }
            if await hypervisor.describe(vm) == .exited {
                throw .internalError("VM \(vm.name) exited during boot; console: \(ConsoleLog.tail(vm.consoleLog))")
            }
            do {
                let agent = try await connect(vm.agent, token, .seconds(2), link.credit, link.forward)
                let remaining = deadline - clock.now
                // The agent answers once the guest has booted and opened its port; QEMU holds the
                // request meanwhile. Check the VM now and then so a dead guest fails fast.
                let health = try await healthWhileAlive(agent, vm: vm, hypervisor: hypervisor, within: remaining)
                try await checkVersion(health, agent: agent)
                return (agent, health)
            } catch let error as CocoonError {
                throw error
            } catch AgentClientError.sessionRefused(let why) {
                throw CocoonError.failedPrecondition(
                    "guest agent of \(vm.name) refused cocoond's session (\(why)): its token does not match; "
                        + "a guest image older than agent API v\(hostAgentAPIVersion)? (images/build-guest)")
            } catch {
                lastError = "\(error)"
                // a retry pause; cancellation is seen by the next connect
                try? await Task.sleep(for: .milliseconds(50))
            }
        }
        throw .deadlineExceeded(
            "guest agent of \(vm.name) not ready within \(bootTimeout) (\(lastError)); console: "
                + "\(ConsoleLog.tail(vm.consoleLog))"
        )
    }

    /// Refuses (and closes) an agent that speaks another API version than this host.
    private func checkVersion(_ health: GuestHealth, agent: any GuestAgent) async throws(CocoonError) {
        guard health.apiVersion == hostAgentAPIVersion else {
            await agent.close()
            throw .failedPrecondition(
                "guest agent speaks API v\(health.apiVersion), cocoond v\(hostAgentAPIVersion): rebuild "
                    + "the guest image (images/build-guest)"
            )
        }
    }

    /// The agent's Health, or a failure as soon as the VM exits while waiting for it.
    private func healthWhileAlive(
        _ agent: any GuestAgent, vm: VMHandle, hypervisor: any Hypervisor, within: Duration
    ) async throws -> GuestHealth {
        try await withThrowingTaskGroup(of: GuestHealth?.self) { group in
            group.addTask { try await agent.health(timeout: within) }
            group.addTask {
                while await hypervisor.describe(vm) != .exited {
                    try await Task.sleep(for: .milliseconds(250))
                }
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let health = first else {
                await agent.close()
                throw CocoonError.internalError(
                    "VM \(vm.name) exited during boot; console: \(ConsoleLog.tail(vm.consoleLog))")
            }
            return health
        }
    }
}
