import AgentClient
import Errors
import Foundation
import Hypervisor
import Models
import Persistence
import PodNetwork

/// The two start strategies that take a VM from the factory: a pool VM, or a template clone
/// restored while CNI sets up the pod's network. Either way the VM becomes the pod's here.
extension SandboxManager {
    /// Restores a clone of the template for the pod while CNI sets up the pod's network (the
    /// clone's tap waits in the host's namespace), then gives the clone to the pod as a pool VM is
    /// given. Nil when the restore failed: logged, the network undone, the template dropped (loaded
    /// again before the next clone); the caller boots the pod cold.
    func cloneForPod(
        _ template: LoadedTemplate, _ plan: RunPlan, request: RunRequest, tokenFile: String,
        record: inout SandboxRecord
    ) async throws(CocoonError) -> StartedVM? {
        let cloneID = VMFactory.poolVMID()
        let podID = record.id
        async let restoring = restoredClone(cloneID, plan, template)
        let network = await podNetwork(request, id: podID, tap: .existingHost(name: VMFactory.poolTapName(cloneID)))
        let restored = await restoring
        record.startSteps?["vm"] = restored.ms
        record.startSteps?["network"] = network.ms
        switch (restored.result, network.result) {
        case (.success(let clone), .success(let attachment)):
            return try await adoptPoolVM(
                clone, request: request, tokenFile: tokenFile, record: &record, attachment: attachment)
        case (.success(let clone), .failure(let error)):
            await factory.end(clone)
            throw error
        case (.failure(let error), let network):
            logger.error(
                "restoring a pod from its handler's template failed; it boots cold",
                metadata: ["id": "\(podID)", "handler": "\(plan.handlerName)", "error": "\(error.message)"])
            if case .success(let attachment) = network {
                await releaseNetwork(podID: podID, attachment.state, what: "a pod whose clone failed")
            }
            await factory.drop(template, of: plan.handlerName)
            record.coldReason = "restoring from the template failed: \(error.message)"
            return nil
        }
    }

    // The two halves of `cloneForPod`, run side by side, as values with their time.
    private func restoredClone(_ id: String, _ plan: RunPlan, _ template: LoadedTemplate) async
        -> (result: Result<PoolVM, CocoonError>, ms: Double)
    {
        let started = ContinuousClock.now
        do {
            let vm = try await factory.startPoolVM(id, plan.handler, template, hypervisor: plan.hypervisor)
            return (.success(vm), (ContinuousClock.now - started).milliseconds)
        } catch {
            return (.failure(error), (ContinuousClock.now - started).milliseconds)
        }
    }

    private func podNetwork(_ request: RunRequest, id: String, tap: TapPlacement) async
        -> (result: Result<PodNetworkAttachment, CocoonError>, ms: Double)
    {
        let started = ContinuousClock.now
        do {
            let attachment = try await setUpNetwork(request, id: id, tap: tap)
            return (.success(attachment), (ContinuousClock.now - started).milliseconds)
        } catch {
            return (.failure(error), (ContinuousClock.now - started).milliseconds)
        }
    }

    /// Makes a pool VM the pod's: its console log and token move into the pod's directory, its
    /// events go to the pod, CNI sets up the pod's network (unless done already: `attachment`). Its
    /// VM user stays held, now by the pod. Its tap, still in the host's namespace, is the caller's
    /// to move (`wireTap`).
    func adoptPoolVM(
        _ pooled: PoolVM, request: RunRequest, tokenFile: String, record: inout SandboxRecord,
        attachment ready: PodNetworkAttachment? = nil
    ) async throws(CocoonError) -> StartedVM {
        let id = record.id
        var vm = pooled.vm
        record.vmUID = pooled.uid
        let console = store.directory(for: id) + "/console.log"
        if rename(vm.consoleLog, console) == 0 { vm.consoleLog = console }  // QEMU writes on to the same file
        guard rename(AgentTokenFile.path(inStateDir: pooled.stateDir), tokenFile) == 0 else {
            let reason = String(cString: strerror(errno))
            record.vm = vm  // the rollback ends it
            records[id] = record
            await pooled.agent.close()
            VMFactory.removePoolDir(pooled.stateDir)
            throw .internalError("cannot move the pool VM's token: \(reason)")
        }
        VMFactory.removePoolDir(pooled.stateDir)
        record.vm = vm
        record.start = ready == nil ? .pool : .template
        record.network = ready?.state
        records[id] = record
        pooled.owner.hand(to: id)
        keep(pooled.agent, for: id)
        try store.save(record)
        if let parent = record.cgroupParent {
            vm = try await joinPodCgroup(vm, parent: parent, record: &record)
        }
        var attachment: PodNetworkAttachment
        if let ready {
            attachment = ready
        } else {
            let started = ContinuousClock.now
            attachment = try await setUpNetwork(request, id: id, tap: .existingHost(name: pooled.tapName))
            record.startSteps?["network"] = (ContinuousClock.now - started).milliseconds
        }
        record.network = attachment.state
        records[id] = record
        try store.save(record)
        // its tap joins the pod while the guest is configured
        return StartedVM(vm: vm, health: pooled.health, attachment: attachment)
    }

    /// Moves a VM booted before its pod was known into the pod's cgroup.
    private func joinPodCgroup(_ vm: VMHandle, parent: String, record: inout SandboxRecord) async throws(CocoonError)
        -> VMHandle
    {
        guard let hypervisor = hypervisors[vm.backend] else { return vm }
        let joined: VMHandle
        do {
            joined = try await hypervisor.joinPodCgroup(
                vm, parent: parent, vcpus: record.vcpus, memoryMiB: record.memoryMiB)
        } catch {
            throw CocoonError.from(error)
        }
        record.vm = joined
        records[record.id] = record
        try store.save(record)
        return joined
    }

    /// Moves a clone's tap into the pod's namespace and wires it (side by side with ConfigurePod):
    /// the error, if any, and the time it took.
    func wireTap(_ state: PodNetworkState?) async -> (error: CocoonError?, ms: Double) {
        guard let state else { return (nil, 0) }
        let started = ContinuousClock.now
        do {
            try await adoptHostTap(state)
            return (nil, (ContinuousClock.now - started).milliseconds)
        } catch {
            return (error, (ContinuousClock.now - started).milliseconds)
        }
    }
}
