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

/// The warm pool of each template handler (`pool_size`): clones restored and waiting; RunPodSandbox
/// takes one (its network and identity given then) and a refill starts. Never more than the size:
/// one fill at a time per handler, and a taken VM leaves the pool before any await.
extension VMFactory {
    var poolRoot: String { config.stateRoot + "/pool" }

    /// Starts a refill of the handler's pool unless one runs.
    func refillPool(_ name: String, _ handler: RuntimeHandler) {
        guard !stopping, work[name] == nil, handler.poolSize > 0 else { return }
        startWork(name) { await self.fillPool(name, handler) }
    }

    /// Restores clones one at a time until the pool has its size (or the template changes, or the
    /// daemon stops).
    func fillPool(_ name: String, _ handler: RuntimeHandler) async {
        guard let hypervisor = hypervisors[handler.backend] else { return }
        while !stopping, !Task.isCancelled, let template = templates[name], (pools[name]?.count ?? 0) < handler.poolSize
        {
            do {
                let vm = try await startPoolVM(Self.poolVMID(), handler, template, hypervisor: hypervisor, warm: true)
                if templates[name] === template, !stopping {
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
        _ id: String, _ handler: RuntimeHandler, _ template: LoadedTemplate, hypervisor: any Hypervisor,
        warm: Bool = false
    ) async throws(CocoonError) -> PoolVM {
        let stateDir = poolRoot + "/" + id
        let uid = try reserveUID()
        do {
            try FileManager.default.createDirectory(
                atPath: stateDir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            release(uid)
            throw .internalError("cannot create the pool VM directory \(stateDir): \(error)")
        }
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
                extraKernelArgs: handler.kernelArgs, stateDir: stateDir, runDir: config.vmRunDir(id),
                agentTokenFile: tokenFile, user: VMUser(uid: uid, gid: uid))
            spec.origin = .clone(ramFD: template.ramFD, state: template.state)
            spec.nic = VMNic(tapFD: tapFD, mac: BootContract.templateMAC, mtu: 1500, tapName: tapName)
            let booted = try await bootRecorded(spec, hypervisor: hypervisor)
            vm = booted
            let owner = EventOwner(id)
            let (agent, health) = try await dialer.dial(
                booted, hypervisor: hypervisor, token: token, link: eventLink(owner))
            if warm { try await warmUp(agent) }
            return PoolVM(
                id: id, vm: booted, agent: agent, health: health, uid: uid, stateDir: stateDir, tapName: tapName,
                owner: owner, templateKey: template.manifest.key)
        } catch {
            if let vm { await hypervisor.stop(vm, timeout: .zero) }
            release(uid)
            Self.removePoolDir(stateDir)
            throw error
        }
    }

    /// Boots (restores) the pool VM and records its handle in `pool.json`, for a restarted daemon.
    private func bootRecorded(_ spec: VMSpec, hypervisor: any Hypervisor) async throws(CocoonError) -> VMHandle {
        let vm: VMHandle
        do {
            vm = try await hypervisor.boot(spec)
        } catch {
            throw CocoonError.from(error)
        }
        do {
            try AtomicFile.write(try JSONEncoder().encode(vm), to: spec.stateDir + "/pool.json")
        } catch {
            await hypervisor.stop(vm, timeout: .zero)
            throw .internalError("cannot record the pool VM \(spec.id): \(error)")
        }
        return vm
    }

    /// Runs ConfigurePod's steps once in a fresh clone (closing its agent if that fails).
    private func warmUp(_ agent: any GuestAgent) async throws(CocoonError) {
        var warmUp = PodConfiguration(
            interface: .init(mac: BootContract.templateMAC, mtu: 1500, addresses: [], routes: []))
        warmUp.restored = RestoredIdentity.fresh(templateMAC: BootContract.templateMAC)
        do {
            try await agent.configurePod(warmUp, timeout: agentCall)
        } catch {
            await agent.close()
            throw CocoonError.from(error, "warming the pool VM up")
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
        startWork("retire-" + vms[0].id) {
            for vm in vms { await self.end(vm) }
        }
    }

    /// Ends a clone no pod took: its agent, its VM, its user and its files.
    func end(_ pooled: PoolVM) async {
        await pooled.agent.close()
        if let hypervisor = hypervisors[pooled.vm.backend] { await hypervisor.stop(pooled.vm, timeout: .zero) }
        release(pooled.uid)
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
