import AgentClient
import BootContract
import Config
import Errors
import Foundation
import Hypervisor
import Models
import Persistence
import PodNetwork
import Spawn

/// What a RunPodSandbox asks for, checked: the handler and its hypervisor, the pod's name, and the
/// VM's size and cgroup parent.
struct RunPlan {
    let handlerName: String
    let handler: RuntimeHandler
    let hypervisor: any Hypervisor
    let name: String
    let vcpus: Int
    let memoryMiB: Int
    let cgroupParent: String?
}

/// A pod's VM as a start strategy (cold boot, template clone, warm pool) hands it over: its handle,
/// its guest's health and its network attachment.
struct StartedVM {
    let vm: VMHandle
    let health: GuestHealth
    /// Nil for a pod on the node's network (native hostNetwork).
    let attachment: PodNetworkAttachment?
}

extension SandboxManager {
    /// RunPodSandbox: the plan, then one of the three start strategies, the pod's configuration,
    /// and on any failure one rollback that leaves no VM, file or name behind.
    public func run(_ request: RunRequest) async throws(CocoonError) -> String {
        let plan = try plan(request)
        let id = RecordID.make { prefix in records.keys.contains { $0.hasPrefix(prefix) } }
        names[plan.name] = id
        _ = locks.tryAcquire(id)  // a fresh id: nobody else can hold it
        defer { locks.release(id) }

        let started = ContinuousClock.now
        var record = SandboxRecord(
            id: id, metadata: request.metadata, labels: request.labels, annotations: request.annotations,
            runtimeHandler: plan.handlerName, createdAtNs: HostProcess.nowNs(), vcpus: plan.vcpus,
            memoryMiB: plan.memoryMiB, configJSON: request.configJSON)
        record.cgroupParent = plan.cgroupParent
        if request.hostNetwork { record.hostNetwork = true }
        if request.hostPID { record.hostPID = true }
        if request.hostIPC { record.hostIPC = true }
        records[id] = record
        do throws(CocoonError) {
            try store.save(record)
            let vm = try await startVM(plan, request, record: &record)
            try await configure(vm, request, record: &record)
            record.transition(
                .booted(bootMs: (ContinuousClock.now - started).milliseconds, guest: GuestInfo(vm.health)))
            records[id] = record
            try store.save(record)
            logger.info(
                "sandbox ready",
                metadata: [
                    "id": "\(id)", "pod": "\(plan.name)", "boot_ms": "\(Int(record.bootMs ?? 0))",
                    "accel": "\(vm.vm.accel.rawValue)", "start": "\(record.start?.rawValue ?? "cold")",
                ])
            if record.start == .pool { await factory.refillPool(plan.handlerName, plan.handler) }
            return id
        } catch {
            await rollBack(id, plan)
            logger.warning("RunPodSandbox failed", metadata: ["pod": "\(plan.name)", "error": "\(error)"])
            throw error
        }
    }

    /// The request checked against the configuration and the host; nothing is reserved yet.
    func plan(_ request: RunRequest) throws(CocoonError) -> RunPlan {
        guard let (handlerName, handler) = config.handler(named: request.runtimeHandler) else {
            let known = config.handlers.keys.sorted().joined(separator: ", ")
            throw .notFound("runtime handler \"\(request.runtimeHandler)\" is not configured (configured: \(known))")
        }
        guard let hypervisor = hypervisors[handler.backend] else {
            throw .unavailable(
                "hypervisor backend \(handler.backend.rawValue) of handler \(handlerName) is not available")
        }
        try Self.checkHostNamespaces(request, handlerName, handler, handlers: config.handlers)
        let name = request.metadata.reservedName
        if let owner = names[name] {
            throw .alreadyExists(
                "failed to reserve sandbox name \"\(name)\": name \"\(name)\" is reserved for \"\(owner)\"")
        }
        let size = try VMSizing.resolve(request, handler: handler, handlerName: handlerName)
        if !size.ignored.isEmpty {
            logger.warning(
                "pod annotations not enabled for its runtime handler are ignored",
                metadata: ["pod": "\(name)", "handler": "\(handlerName)", "ignored": "\(size.ignored)"])
        }
        let range = RuntimeHandler.memoryRangeMiB
        guard range.contains(size.memoryMiB) else {
            throw .invalidArgument(
                "VM memory of \(size.memoryMiB) MiB is outside \(range.lowerBound)...\(range.upperBound) MiB")
        }
        if let hostMiB = HostMemory.totalMiB(), size.memoryMiB > hostMiB {
            throw .invalidArgument("VM memory of \(size.memoryMiB) MiB exceeds the host's \(hostMiB) MiB")
        }
        switch VMCgroup.resolveParent(request.cgroupParent, driver: config.cgroupDriver) {
        case .success(let parent):
            return RunPlan(
                handlerName: handlerName, handler: handler, hypervisor: hypervisor, name: name, vcpus: size.vcpus,
                memoryMiB: size.memoryMiB, cgroupParent: parent)
        case .failure(let refused):
            throw .invalidArgument("config.linux.cgroup_parent \(refused.message)")
        }
    }

    /// Starts the pod's VM by the first strategy that can: a warm pool VM, a template clone, or a
    /// cold boot (which says why it was cold).
    func startVM(_ plan: RunPlan, _ request: RunRequest, record: inout SandboxRecord) async throws(CocoonError)
        -> StartedVM
    {
        let tokenFile = AgentTokenFile.path(inStateDir: store.directory(for: record.id))
        if plan.handler.backend == .native {
            return try await startNative(plan, request, tokenFile: tokenFile, record: &record)
        }
        let choice = await factory.startChoice(
            plan.handlerName, plan.handler, vcpus: plan.vcpus, memoryMiB: plan.memoryMiB)
        record.startSteps = [:]
        switch choice {
        case .pool(let pooled):
            return try await adoptPoolVM(pooled, request: request, tokenFile: tokenFile, record: &record)
        case .template(let template):
            if let started = try await cloneForPod(
                template, plan, request: request, tokenFile: tokenFile, record: &record)
            {
                return started
            }
            return try await bootCold(plan, request, tokenFile: tokenFile, reason: nil, record: &record)
        case .cold(let reason):
            return try await bootCold(plan, request, tokenFile: tokenFile, reason: reason, record: &record)
        }
    }

    /// The cold strategy: a VM user, the pod's network, its shared directory, and a boot until the
    /// agent answers.
    func bootCold(
        _ plan: RunPlan, _ request: RunRequest, tokenFile: String, reason: String?, record: inout SandboxRecord
    ) async throws(CocoonError) -> StartedVM {
        let id = record.id
        _ = try AgentTokenFile.create(at: tokenFile)
        let uid = try await factory.reserveUID()
        record.vmUID = uid  // held by the pod from now on: `rollBack` or `remove` releases it
        records[id] = record
        try store.save(record)
        let placement: TapPlacement =
            plan.hypervisor.opensTapByName ? .host(name: Self.hostTapName(id)) : .podNamespace
        let networking = ContinuousClock.now
        let attachment = try await setUpNetwork(request, id: id, tap: placement)
        record.startSteps?["network"] = (ContinuousClock.now - networking).milliseconds
        record.network = attachment.state
        records[id] = record
        defer { if attachment.tapFD >= 0 { close(attachment.tapFD) } }  // the VM has its own copy once booted
        try store.save(record)
        let handler = plan.handler
        var spec = VMSpec(
            id: id, kernel: handler.kernel, initrd: handler.initrd, agentImage: handler.agentImage,
            vcpus: plan.vcpus, memoryMiB: plan.memoryMiB, accel: handler.accel, extraKernelArgs: handler.kernelArgs,
            stateDir: store.directory(for: id), runDir: config.vmRunDir(id), agentTokenFile: tokenFile,
            user: VMUser(uid: uid, gid: uid))
        spec.nic = VMNic(
            tapFD: attachment.tapFD, mac: attachment.state.mac, mtu: attachment.state.mtu,
            tapName: attachment.state.hostTap ?? TapWiring.tapName)
        try prepareShare(id, handler: handler, hypervisor: plan.hypervisor, into: &spec)
        spec.sharedCache = handler.sharedFSCache
        spec.cgroupParent = plan.cgroupParent
        if let reason { record.coldReason = reason }
        let booting = ContinuousClock.now
        let (vm, health) = try await bootUntilAgent(spec, hypervisor: plan.hypervisor, record: &record)
        record.startSteps?["vm"] = (ContinuousClock.now - booting).milliseconds
        record.start = .cold
        try await adoptHostTap(attachment.state)
        return StartedVM(vm: vm, health: health, attachment: attachment)
    }

    /// Configures the started VM's guest for this pod (sysctls, interface, identity files, shared
    /// directory; a clone's fresh identity) while a clone's tap joins the pod's namespace.
    func configure(_ started: StartedVM, _ request: RunRequest, record: inout SandboxRecord) async throws(CocoonError) {
        let isClone = record.start != .cold
        async let tapWired: (error: CocoonError?, ms: Double) =
            isClone ? wireTap(started.attachment?.state) : (nil, 0)
        if let agent = agents[record.id] {
            do {
                var configuration = podConfiguration(request, network: started.attachment?.state)
                // A native pod's processes use the namespace's interface as CNI left it.
                if started.vm.backend == .native { configuration.interface = nil }
                if started.vm.sharedDir != nil { configuration.sharedFSTag = BootContract.sharedFSTag }
                if isClone { configuration.restored = RestoredIdentity.fresh(templateMAC: BootContract.templateMAC) }
                let configuring = ContinuousClock.now
                try await agent.configurePod(configuration, timeout: timeouts.agentCall)
                record.startSteps?["configure"] = (ContinuousClock.now - configuring).milliseconds
            } catch {
                _ = await tapWired
                throw CocoonError.from(error, "pod configuration (sysctls, network interface)")
            }
        }
        let wired = await tapWired
        if isClone { record.startSteps?["tap"] = wired.ms }
        if let error = wired.error { throw error }
    }

    /// The one rollback of a failed RunPodSandbox: no VM, no run directory, no agent, no network,
    /// no shared directory, no state and no name left behind.
    func rollBack(_ id: String, _ plan: RunPlan) async {
        if let vm = records[id]?.vm { await plan.hypervisor.stop(vm, timeout: .zero) }
        removeRunDir(id)  // a boot that failed before its VM had a handle left it
        if let agent = agents.removeValue(forKey: id) { await agent.close() }
        if let state = records[id]?.network { await releaseNetwork(podID: id, state, what: "a failed sandbox") }
        releaseShare(id)
        if let uid = records[id]?.vmUID { await factory.release(uid) }
        do {
            try store.delete(id)
        } catch {
            logger.error("state of a failed sandbox left on disk", metadata: ["id": "\(id)", "error": "\(error)"])
        }
        records[id] = nil
        names[plan.name] = nil
    }
}
