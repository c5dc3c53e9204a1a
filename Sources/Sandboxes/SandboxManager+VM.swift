import AgentClient
import Errors
import Foundation
import Hypervisor
import Models
import Spawn

/// Booting a pod's VM until its agent answers, and ending it.
extension SandboxManager {
    /// Boots the VM and waits for its agent. Under `accel = auto`, a KVM boot whose guest prints
    /// nothing on its console within `kvmConsole` (a /dev/kvm that cannot run the guest: the VM spins
    /// and never boots), or whose QEMU exits while it starts (hosts differ in how /dev/kvm fails), is
    /// booted again under TCG, and counts toward flipping the guest's KVM decision (`Accelerator`).
    func bootUntilAgent(
        _ initial: VMSpec, hypervisor: any Hypervisor, record: inout SandboxRecord
    ) async throws(CocoonError) -> (VMHandle, GuestHealth) {
        var spec = initial
        var defects = 0
        while true {
            let vm: VMHandle
            let launching = ContinuousClock.now
            do {
                vm = try await hypervisor.boot(spec)
                // The hypervisor's own share of the boot (QEMU started; for libvirt, the domain created).
                record.startSteps?["launch"] = (ContinuousClock.now - launching).milliseconds
            } catch .kvmStartFailed(let why) where spec.accel == .auto && spec.origin == .boot {
                logger.warning(
                    "QEMU under KVM exited while starting the pod VM; booting it again under TCG",
                    metadata: ["why": "\(why)"])
                await hypervisor.noteKVMBoot(
                    spec, failure: "a pod VM booted under KVM exited while QEMU started: \(why.prefix(400))")
                spec.accel = .tcg
                continue
            } catch {
                throw CocoonError.from(error)
            }
            record.vm = vm
            records[record.id] = record
            try store.save(record)
            if vm.accel == .kvm, spec.accel == .auto, spec.origin == .boot {
                if let stall = await kvmStall(vm, hypervisor: hypervisor) {
                    logger.warning(
                        "KVM boot of the pod VM stalled; booting it again under TCG",
                        metadata: ["vm": "\(vm.name)", "why": "\(stall)"])
                    await hypervisor.stop(vm, timeout: .zero)
                    await hypervisor.noteKVMBoot(spec, failure: "a pod VM booted under KVM \(stall)")
                    spec.accel = .tcg
                    continue
                }
                await hypervisor.noteKVMBoot(spec, failure: nil)
            }
            let health = try await waitForAgent(vm, hypervisor: hypervisor, id: record.id)
            if spec.origin == .boot, defects < 3, let defect = await hypervisor.bootDefect(vm) {
                // A guest without its timer sleeps through requests: boot it again, now.
                defects += 1
                logger.warning(
                    "pod VM came up broken; booting it again", metadata: ["vm": "\(vm.name)", "why": "\(defect)"])
                if let agent = agents.removeValue(forKey: record.id) { await agent.close() }
                await hypervisor.stop(vm, timeout: .zero)
                continue
            }
            return (vm, health)
        }
    }

    /// Nil once a KVM guest's agent has announced itself on the console (its first line, within a
    /// second or two of a working KVM launch); otherwise why the boot is considered stalled.
    private func kvmStall(_ vm: VMHandle, hypervisor: any Hypervisor) async -> String? {
        let clock = ContinuousClock()
        let deadline = clock.now + timeouts.kvmConsole
        while true {
            if ConsoleLog.contains(vm.consoleLog, "cocoon-agent") { return nil }
            if await hypervisor.describe(vm) == .exited { return "exited before its guest agent started" }
            if clock.now >= deadline {
                return "printed no guest agent start on its console within \(timeouts.kvmConsole)"
            }
            try? await Task.sleep(for: .milliseconds(50))  // only cancellation ends it early; the loop checks again
        }
    }

    private func waitForAgent(_ vm: VMHandle, hypervisor: any Hypervisor, id: String) async throws(CocoonError)
        -> GuestHealth
    {
        let (agent, health) = try await dialer.dial(
            vm, hypervisor: hypervisor, token: try agentToken(id), link: eventLink(id))
        keep(agent, for: id)
        return health
    }

    /// Shuts the guest down through its agent, then lets the hypervisor end the VM. Idempotent.
    func stopVM(_ record: inout SandboxRecord, reason: String) async throws(CocoonError) {
        if let vm = record.vm, let hypervisor = hypervisors[vm.backend] {
            if await hypervisor.describe(vm) != .exited {
                var agent = agents.removeValue(forKey: record.id)
                // no agent: the VM is killed below
                if agent == nil, let token = try? agentToken(record.id) {
                    agent = try? await connect(vm.agent, token, .seconds(1), EventCredit(), nil)
                }
                var graceful = false
                if let agent {
                    do {
                        try await agent.shutdown(timeout: timeouts.agentCall)
                        graceful = true
                    } catch {
                        logger.info(
                            "guest did not take the shutdown; the VM is killed",
                            metadata: ["id": "\(record.id)", "error": "\(error)"])
                    }
                    await agent.close()
                }
                await hypervisor.stop(vm, timeout: graceful ? timeouts.shutdown : .zero)
            } else {
                await hypervisor.stop(vm, timeout: .zero)  // releases the run dir
            }
        }
        if let agent = agents.removeValue(forKey: record.id) { await agent.close() }
        if record.transition(.stopped(reason: reason, atNs: HostProcess.nowNs())) {
            records[record.id] = record
            try store.save(record)
        }
    }

    /// Marks a READY sandbox NOTREADY when its VM has died. Changes only the record as it is after
    /// the check (other calls may have changed it meanwhile, e.g. attached a disk).
    func refresh(_ id: String) async {
        guard let vm = records[id]?.vm, records[id]?.state == .ready, let hypervisor = hypervisors[vm.backend] else {
            return
        }
        guard await hypervisor.describe(vm) == .exited, var record = records[id],
            record.transition(.vmExited(atNs: HostProcess.nowNs()))
        else {
            return
        }
        records[id] = record
        logger.warning("sandbox VM is gone", metadata: ["id": "\(id)", "vm": "\(vm.name)"])
        if let agent = agents.removeValue(forKey: id) { await agent.close() }
        save(record, what: "sandbox VM exit")
    }
}
