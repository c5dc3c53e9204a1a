import AgentClient
import BootContract
import CSpawn
import Config
import Errors
import Foundation
import Hypervisor
import Models
import Persistence
import Spawn

/// Building a template: a VM booted to a ready agent, its NIC up once, its device state saved and
/// its RAM sealed, then written with checksums to the handler's template directory.
extension VMFactory {
    /// Boots the template VM to a ready agent, lets its agent see the host leave, saves its device
    /// state, ends it, seals its RAM and writes the template to `dir`.
    func buildTemplate(
        _ name: String, _ handler: RuntimeHandler, hypervisor: any Hypervisor, inputs: [String], dir: String
    ) async throws(CocoonError) -> LoadedTemplate {
        let started = ContinuousClock.now
        let building = dir + ".building"
        try Self.freshDirectory(building)
        let id = "tpl" + String(RecordID.make { _ in false }.prefix(13))
        let uid = try reserveUID()
        defer { release(uid) }
        let tokenFile = AgentTokenFile.path(inStateDir: building)
        let token = try AgentTokenFile.create(at: tokenFile)
        defer { unlink(tokenFile) }
        let size = handler.memoryMiB << 20
        let memfd = cocoon_template_ram("cocoon-template-" + name, UInt64(size))
        guard memfd >= 0 else {
            throw .internalError("memfd for the template RAM: \(String(cString: strerror(errno)))")
        }
        var spec = VMSpec(
            id: id, kernel: handler.kernel, initrd: handler.initrd, agentImage: handler.agentImage,
            vcpus: handler.vcpus,
            memoryMiB: handler.memoryMiB, accel: handler.accel, extraKernelArgs: handler.kernelArgs, stateDir: building,
            runDir: config.vmRunDir(id), agentTokenFile: tokenFile, user: VMUser(uid: uid, gid: uid))
        spec.origin = .template(ramFD: memfd)
        spec.nic = VMNic(tapFD: -1, mac: BootContract.templateMAC, mtu: 1500, tapName: "")
        let state: Data
        do throws(CocoonError) {
            state = try await bootAndSave(spec, hypervisor: hypervisor, token: token, building: building)
            // QEMU is gone, and its shared mapping with it: from now on nothing writes the RAM.
            guard cocoon_seal_writes(memfd) == 0 else {
                throw .internalError("cannot seal the template RAM: \(String(cString: strerror(errno)))")
            }
        } catch {
            close(memfd)
            TemplateFiles.remove(building)
            throw error
        }
        let buildMs = (ContinuousClock.now - started).milliseconds
        do throws(CocoonError) {
            let manifest = try await writeTemplate(
                memfd: memfd, size: size, handler, inputs: inputs, building: building, buildMs: buildMs)
            unlink(tokenFile)  // the template VM is gone: its token opens nothing and is not kept
            TemplateFiles.remove(dir)
            guard rename(building, dir) == 0 else {
                throw .internalError("cannot move \(building) to \(dir): \(String(cString: strerror(errno)))")
            }
            return LoadedTemplate(ramFD: memfd, state: state, manifest: manifest)
        } catch {
            close(memfd)
            TemplateFiles.remove(building)
            throw error
        }
    }

    /// An empty directory at `path` (a leftover of an earlier build removed), only for us.
    private static func freshDirectory(_ path: String) throws(CocoonError) {
        TemplateFiles.remove(path)
        do {
            try FileManager.default.createDirectory(
                atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw .internalError("cannot create the template directory \(path): \(error)")
        }
    }

    /// Boots the template VM, brings its NIC up once, waits until its agent saw the host leave,
    /// saves its device state into `building` and ends the VM: the saved state.
    private func bootAndSave(
        _ spec: VMSpec, hypervisor: any Hypervisor, token: [UInt8], building: String
    ) async throws(CocoonError) -> Data {
        let vm: VMHandle
        do {
            vm = try await hypervisor.boot(spec)
        } catch {
            throw CocoonError.from(error)
        }
        do throws(CocoonError) {
            try await configureNIC(vm, hypervisor: hypervisor, token: token, id: spec.id)
            // Every clone would inherit a guest that sleeps through its timers.
            if let defect = await hypervisor.bootDefect(vm) {
                throw CocoonError.unavailable("template VM came up broken (built again on the next demand): \(defect)")
            }
            // The agent must have seen the host leave, so every clone starts a fresh session.
            try await waitForConsole(vm.consoleLog, "cocoon-agent: host disconnected", within: .seconds(10))
            let state = try await saveState(vm, hypervisor: hypervisor, building: building)
            await hypervisor.stop(vm, timeout: .zero)
            return state
        } catch {
            await hypervisor.stop(vm, timeout: .zero)
            throw error
        }
    }

    /// Connects to the template VM's agent, has it bring the NIC up and lets it go again.
    private func configureNIC(
        _ vm: VMHandle, hypervisor: any Hypervisor, token: [UInt8], id: String
    ) async throws(CocoonError) {
        let (agent, _) = try await dialer.dial(
            vm, hypervisor: hypervisor, token: token, link: eventLink(EventOwner(id)))
        do {
            // The NIC goes up once, here (its receive ring filled): no clone pays for it again.
            try await agent.configurePod(
                PodConfiguration(interface: .init(mac: BootContract.templateMAC, mtu: 1500, addresses: [], routes: [])),
                timeout: agentCall)
        } catch {
            await agent.close()
            throw CocoonError.from(error, "template NIC")
        }
        await agent.close()
    }

    /// Saves the VM's device state to `building`'s state file and reads it back.
    private func saveState(_ vm: VMHandle, hypervisor: any Hypervisor, building: String) async throws(CocoonError)
        -> Data
    {
        let statePath = TemplateFiles.statePath(building)
        let stateFD = open(statePath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard stateFD >= 0 else { throw .internalError("cannot create \(statePath)") }
        defer { close(stateFD) }
        do {
            try await hypervisor.saveTemplate(vm, stateFD: stateFD)
        } catch {
            throw CocoonError.from(error)
        }
        guard fsync(stateFD) == 0, let saved = FileManager.default.contents(atPath: statePath) else {
            throw .internalError("cannot read back \(statePath)")
        }
        return saved
    }

    /// Writes the sealed RAM and the manifest (with both checksums) into `building`.
    private func writeTemplate(
        memfd: Int32, size: Int, _ handler: RuntimeHandler, inputs: [String], building: String, buildMs: Double
    ) async throws(CocoonError) -> TemplateManifest {
        let (ramDigest, data) = try await OffPool.run { () throws(CocoonError) in
            try TemplateFiles.saveRAM(memfd, size: size, to: TemplateFiles.ramPath(building))
        }
        let manifest = TemplateManifest(
            key: TemplateKey.key(inputs), inputs: inputs, vcpus: handler.vcpus, memoryMiB: handler.memoryMiB,
            ramDigest: ramDigest, stateDigest: try TemplateFiles.digest(ofFile: TemplateFiles.statePath(building)),
            ramDataBytes: data, builtAtNs: HostProcess.nowNs(), buildMs: buildMs)
        try TemplateFiles.writeManifest(manifest, building)
        return manifest
    }

    private func waitForConsole(_ path: String, _ marker: String, within: Duration) async throws(CocoonError) {
        let clock = ContinuousClock()
        let deadline = clock.now + within
        while clock.now < deadline {
            if let text = FileManager.default.contents(atPath: path),
                String(decoding: text, as: UTF8.self).contains(marker)
            {
                return
            }
            if Task.isCancelled { throw .unavailable("template build cancelled") }
            try? await Task.sleep(for: .milliseconds(20))  // cancellation is checked above
        }
        throw .deadlineExceeded("the template VM's agent did not log \"\(marker)\" within \(within)")
    }
}

/// A template handler as `Status` (verbose) and `cocoonctl info` show it.
public struct TemplateStatus: Sendable, Encodable {
    enum CodingKeys: String, CodingKey {
        case handler, ready, key, vcpus, building
        case memoryMiB = "memory_mib", ramDataMiB = "ram_data_mib", buildMs = "build_ms"
        case poolReady = "pool_ready", poolSize = "pool_size", ramResidentMiB = "ram_resident_mib"
    }
    public var handler: String
    public var ready: Bool
    public var building: Bool
    public var key: String?
    public var vcpus: Int?
    public var memoryMiB: Int?
    public var ramDataMiB: Int64?
    public var buildMs: Double?
    public var poolReady: Int
    public var poolSize: Int
    /// The template's RAM memfd as the host holds it (shmem in no process's RSS): every pod of the
    /// handler shares it, and it is held while the template is loaded.
    public var ramResidentMiB: Int64?
}
