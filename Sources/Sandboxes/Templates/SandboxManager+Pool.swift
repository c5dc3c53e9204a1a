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
import Synchronization

/// A clone of a template restored ahead of time, its agent connected, waiting for a pod: its state
/// directory (`<state_root>/pool/<id>`: console log, token, `pool.json` with its VM handle, so a
/// restarted daemon finds and ends it), its VM user and its tap in the host's namespace.
struct PoolVM: Sendable {
    let id: String
    let vm: VMHandle
    let agent: any GuestAgent
    let health: GuestHealth
    let uid: UInt32
    let stateDir: String
    let tapName: String
    let owner: EventOwner
    let templateKey: String
}

/// Whose pod a pool VM's agent events belong to: the pool VM's own id until a pod takes it.
final class EventOwner: Sendable {
    private let current: Mutex<String>
    init(_ id: String) { current = Mutex(id) }
    var id: String { current.withLock { $0 } }
    func hand(to podID: String) { current.withLock { $0 = podID } }
}

/// How a pod's VM will start.
enum StartChoice {
    /// A boot, and why (nil: the handler boots cold anyway).
    case cold(reason: String?)
    case template(LoadedTemplate)
    case pool(PoolVM)
}

/// The warm pool of each template handler (`pool_size`): clones restored and waiting; RunPodSandbox
/// takes one (its network and identity given then) and a refill starts. Never more than the size:
/// one fill at a time per handler, and a taken VM leaves the pool before any await.
extension SandboxManager {
    var poolRoot: String { config.stateRoot + "/pool" }

    /// Where a pod of `handler` starts from: a pool VM, a clone of the template, or a cold boot
    /// (template not ready yet, or a VM size other than the template's).
    func startChoice(_ name: String, _ handler: RuntimeHandler, vcpus: Int, memoryMiB: Int) -> StartChoice {
        guard handler.start == .template else { return .cold(reason: nil) }
        guard let hypervisor = hypervisors[handler.backend], hypervisor.makesTemplates else {
            return .cold(reason: "the hypervisor cannot restore templates here (vsock agent channel)")
        }
        guard let template = template(name, handler) else {
            return .cold(reason: "the handler's template is not ready yet")
        }
        guard template.manifest.vcpus == vcpus, template.manifest.memoryMiB == memoryMiB else {
            return .cold(
                reason: "the pod's VM (\(vcpus) vCPUs, \(memoryMiB) MiB) is not the template's "
                    + "(\(template.manifest.vcpus) vCPUs, \(template.manifest.memoryMiB) MiB)")
        }
        if var pool = pools[name], !pool.isEmpty {
            let taken = pool.removeFirst()
            pools[name] = pool
            if taken.templateKey == template.manifest.key { return .pool(taken) }
            retire([taken])
        }
        return .template(template)
    }

    /// Makes a pool VM the pod's: its console log and token move into the pod's directory, its
    /// events go to the pod, CNI sets up the pod's network (unless done already: `attachment`). Its
    /// tap, still in the host's namespace, is the caller's to move (`wireTap`).
    func adoptPoolVM(
        _ pooled: PoolVM, request: RunRequest, tokenFile: String, record: inout SandboxRecord,
        attachment ready: PodNetworkAttachment? = nil
    ) async throws(CocoonError) -> (VMHandle, GuestHealth, PodNetworkAttachment) {
        let id = record.id
        var vm = pooled.vm
        record.vmUID = pooled.uid
        reservedUIDs.remove(pooled.uid)
        let console = store.directory(for: id) + "/console.log"
        if rename(vm.consoleLog, console) == 0 { vm.consoleLog = console }  // QEMU writes on to the same file
        guard rename(AgentTokenFile.path(inStateDir: pooled.stateDir), tokenFile) == 0 else {
            record.vm = vm
            records[id] = record
            throw .internalError("cannot move the pool VM's token: \(String(cString: strerror(errno)))")
        }
        Self.removePoolDir(pooled.stateDir)
        record.vm = vm
        record.start = ready == nil ? .pool : .template
        record.network = ready?.state
        records[id] = record
        pooled.owner.hand(to: id)
        agents[id] = pooled.agent
        try store.save(record)
        if let parent = record.cgroupParent, let hypervisor = hypervisors[vm.backend] {
            // Booted before its pod was known: it joins the pod's cgroup now.
            do {
                vm = try await hypervisor.joinPodCgroup(
                    vm, parent: parent, vcpus: record.vcpus, memoryMiB: record.memoryMiB)
            } catch {
                throw CocoonError.from(error)
            }
            record.vm = vm
            records[id] = record
            try store.save(record)
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
        return (vm, pooled.health, attachment)  // its tap joins the pod while the guest is configured
    }

    /// Moves a clone's tap into the pod's namespace and wires it (side by side with ConfigurePod):
    /// the error, if any, and the time it took.
    func wireTap(_ state: PodNetworkState) async -> (error: CocoonError?, ms: Double) {
        let started = ContinuousClock.now
        do {
            try await adoptHostTap(state)
            return (nil, (ContinuousClock.now - started).milliseconds)
        } catch {
            return (error, (ContinuousClock.now - started).milliseconds)
        }
    }

    /// Starts a refill of the handler's pool unless one runs.
    func refillPool(_ name: String, _ handler: RuntimeHandler) {
        guard !templatesStopping, templateWork[name] == nil, handler.poolSize > 0 else { return }
        templateWork[name] = Task { await self.refillWork(name, handler) }
    }

    private func refillWork(_ name: String, _ handler: RuntimeHandler) async {
        defer { templateWork[name] = nil }
        await fillPool(name, handler)
    }

    /// Restores clones one at a time until the pool has its size (or the template changes, or the
    /// daemon stops).
    func fillPool(_ name: String, _ handler: RuntimeHandler) async {
        guard let hypervisor = hypervisors[handler.backend] else { return }
        while !templatesStopping, !Task.isCancelled, let template = templates[name],
            (pools[name]?.count ?? 0) < handler.poolSize
        {
            do {
                let vm = try await startPoolVM(
                    Self.poolVMID(), name, handler, template, hypervisor: hypervisor, warm: true)
                if templates[name] === template, !templatesStopping {
                    pools[name, default: []].append(vm)
                } else {
                    await end(vm)
                }
            } catch {
                logger.warning(
                    "a pool VM could not be restored; the pool waits for the next pod",
                    metadata: ["handler": "\(name)", "error": "\(error.message)"])
                return
            }
        }
    }

    /// A fresh pool VM id (`pool` and 12 hex digits; its QEMU is named `cocoon-pool…`).
    static func poolVMID() -> String { "pool" + String(RecordID.make { _ in false }.prefix(12)) }
    /// Its tap in the host's namespace: `cp` and its 12 digits.
    static func poolTapName(_ id: String) -> String { "cp" + String(id.dropFirst(4).prefix(12)) }

    /// Restores a clone of `template` with a tap of its own in the host's namespace and connects to
    /// its agent (a pool VM, or a template pod's VM before the pod takes it).
    /// `warm`: the guest runs the steps of ConfigurePod once now (reseed, clock, its NIC with the
    /// template's address): a fresh QEMU translates guest code on first use, and a pod taking this
    /// VM then waits less (a pool's VM; not a clone a pod waits for already).
    func startPoolVM(
        _ id: String, _ name: String, _ handler: RuntimeHandler, _ template: LoadedTemplate, hypervisor: any Hypervisor,
        warm: Bool = false
    ) async throws(CocoonError) -> PoolVM {
        let stateDir = poolRoot + "/" + id
        do {
            try FileManager.default.createDirectory(
                atPath: stateDir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw .internalError("cannot create the pool VM directory \(stateDir): \(error)")
        }
        let uid = try freeVMUID()
        reservedUIDs.insert(uid)
        var vm: VMHandle?
        do throws(CocoonError) {
            let tokenFile = AgentTokenFile.path(inStateDir: stateDir)
            let token = try AgentTokenFile.create(at: tokenFile)
            let tapName = Self.poolTapName(id)
            let tapFD: Int32
            do {
                tapFD = try TapWiring.openHostTap(tapName)
            } catch {
                throw CocoonError.from(error)
            }
            defer { close(tapFD) }  // QEMU has its own copy once booted
            var spec = VMSpec(
                id: id, kernel: handler.kernel, initrd: handler.initrd, agentImage: handler.agentImage,
                vcpus: template.manifest.vcpus, memoryMiB: template.manifest.memoryMiB, accel: handler.accel,
                extraKernelArgs: handler.kernelArgs, stateDir: stateDir, runDir: runDir(id), agentTokenFile: tokenFile,
                user: VMUser(uid: uid, gid: uid))
            spec.origin = .clone(ramFD: template.ramFD, state: template.state)
            spec.nic = VMNic(tapFD: tapFD, mac: BootContract.templateMAC, mtu: 1500, tapName: tapName)
            do {
                vm = try await hypervisor.boot(spec)
            } catch {
                throw CocoonError.from(error)
            }
            guard let vm else { throw .internalError("pool VM \(id) has no handle") }
            do {
                try AtomicFile.write(try JSONEncoder().encode(vm), to: stateDir + "/pool.json")
            } catch {
                throw .internalError("cannot record the pool VM \(id): \(error)")
            }
            let owner = EventOwner(id)
            let (agent, health) = try await connectAgent(
                vm, hypervisor: hypervisor, token: token, link: eventLink(owner))
            if warm {
                var warmUp = PodConfiguration(
                    interface: .init(mac: BootContract.templateMAC, mtu: 1500, addresses: [], routes: []))
                warmUp.restored = RestoredIdentity.fresh(templateMAC: BootContract.templateMAC)
                do {
                    try await agent.configurePod(warmUp, timeout: timeouts.agentCall)
                } catch {
                    await agent.close()
                    throw CocoonError.from(error, "warming the pool VM up")
                }
            }
            return PoolVM(
                id: id, vm: vm, agent: agent, health: health, uid: uid, stateDir: stateDir, tapName: tapName,
                owner: owner, templateKey: template.manifest.key)
        } catch {
            if let vm { await hypervisor.stop(vm, timeout: .zero) }
            reservedUIDs.remove(uid)
            Self.removePoolDir(stateDir)
            throw error
        }
    }

    /// Ends every pool VM (the daemon is stopping).
    func drainPools() async {
        let all = pools.values.flatMap { $0 }
        pools.removeAll()
        for vm in all { await end(vm) }
    }

    /// Ends pool VMs of a template that is no longer current, without holding up the caller.
    func retire(_ vms: [PoolVM]) {
        guard !vms.isEmpty else { return }
        templateWork["retire-" + vms[0].id] = Task {
            for vm in vms { await self.end(vm) }
            self.templateWork["retire-" + vms[0].id] = nil
        }
    }

    func end(_ pooled: PoolVM) async {
        await pooled.agent.close()
        if let hypervisor = hypervisors[pooled.vm.backend] { await hypervisor.stop(pooled.vm, timeout: .zero) }
        reservedUIDs.remove(pooled.uid)
        Self.removePoolDir(pooled.stateDir)
    }

    /// Pool VMs a previous daemon left (a crash: a graceful stop ends them): ended, their files gone.
    func recoverPool() async {
        // try?: no pool directory: nothing was left
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: poolRoot)) ?? [] {
            let dir = poolRoot + "/" + entry
            if let data = FileManager.default.contents(atPath: dir + "/pool.json"),
                let vm = try? JSONDecoder().decode(VMHandle.self, from: data),  // try?: unreadable: nothing to end
                let hypervisor = hypervisors[vm.backend]
            {
                await hypervisor.stop(vm, timeout: .zero)
                logger.info("ended a pool VM left by a previous daemon", metadata: ["vm": "\(vm.name)"])
            }
            Self.removePoolDir(dir)
        }
    }

    /// Removes a pool VM's directory: its known files, then the directory (never recursively).
    static func removePoolDir(_ dir: String) {
        for file in ["pool.json", "agent.token", "console.log"] { unlink(dir + "/" + file) }
        rmdir(dir)
    }
}
