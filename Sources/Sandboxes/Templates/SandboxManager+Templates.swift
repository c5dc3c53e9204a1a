import AgentClient
import BootContract
import CSpawn
import Config
import Errors
import Foundation
import Hypervisor
import Models
import Persistence
import PodNetwork
import Spawn

/// A handler's template, ready for clones: its RAM as a write-sealed memfd (owned here, closed
/// when the last user lets go: a clone restored from it keeps its own mapping) and its device state.
final class LoadedTemplate: Sendable {
    let ramFD: Int32
    let state: Data
    let manifest: TemplateManifest

    init(ramFD: Int32, state: Data, manifest: TemplateManifest) {
        self.ramFD = ramFD
        self.state = state
        self.manifest = manifest
    }

    deinit { close(ramFD) }
}

/// Templates (`start = "template"`): one VM per handler booted to a ready agent, paused and saved
/// (device state; RAM in a memfd), kept under `<state_root>/templates/<handler>/` and in memory;
/// each pod of the handler is then a clone of it whose RAM is the template's, copy-on-write. A
/// template is loaded (checksums checked) or built in the background, at daemon start and whenever
/// a pod finds none; pods meanwhile boot cold. One whose inputs changed is rebuilt.
extension SandboxManager {
    var templatesRoot: String { config.stateRoot + "/templates" }
    func templateDir(_ handlerName: String) -> String { templatesRoot + "/" + handlerName }

    /// Starts loading or building the template of every handler that starts pods from one.
    public func prepareTemplates() {
        for (name, handler) in config.handlers.sorted(by: { $0.key < $1.key }) where handler.start == .template {
            _ = template(name, handler)
        }
    }

    /// Ends template builds and pool refills (the daemon is stopping), and the pools' VMs.
    public func stopTemplates() async {
        templatesStopping = true
        let running = Array(templateWork.values)
        for task in running { task.cancel() }
        for task in running { await task.value }
        await drainPools()
    }

    /// The handler's template when it is ready for clones (its key still the current one); else
    /// nil, and its loading or building is started.
    func template(_ name: String, _ handler: RuntimeHandler) -> LoadedTemplate? {
        guard let hypervisor = hypervisors[handler.backend], hypervisor.makesTemplates else { return nil }
        let key = TemplateKey.key(TemplateKey.inputs(handler, qemu: hypervisor.qemuBinary))
        if let loaded = templates[name] {
            if loaded.manifest.key == key { return loaded }
            logger.info("template inputs changed; rebuilding it", metadata: ["handler": "\(name)"])
            templates[name] = nil  // running clones keep their own mappings
            retire(pools.removeValue(forKey: name) ?? [])
        }
        guard !templatesStopping, templateWork[name] == nil else { return nil }
        if let failed = templateFailedAt[name], ContinuousClock.now - failed < .seconds(60) { return nil }
        templateWork[name] = Task { await self.prepareTemplate(name, handler, hypervisor: hypervisor) }
        return nil
    }

    /// Builds the template of `handler` (empty: of every template handler) again now: the saved
    /// one is removed, the pool drained and refilled from the new one. Running pods are untouched.
    public func rebuildTemplates(_ handler: String) async throws(CocoonError) -> [TemplateStatus] {
        let names: [String]
        if handler.isEmpty {
            names = config.handlers.filter { $0.value.start == .template }.keys.sorted()
            guard !names.isEmpty else {
                throw .failedPrecondition("no runtime handler starts pods from a template (start = \"template\")")
            }
        } else {
            guard let h = config.handlers[handler] else {
                throw .notFound("runtime handler \"\(handler)\" is not configured")
            }
            guard h.start == .template else {
                throw .failedPrecondition(
                    "runtime handler \(handler) boots its pods cold (start = \"cold\"): no template")
            }
            names = [handler]
        }
        for name in names {
            guard let h = config.handlers[name], let hypervisor = hypervisors[h.backend], hypervisor.makesTemplates
            else {
                throw .failedPrecondition("runtime handler \(name): its hypervisor cannot make templates here")
            }
            guard !templatesStopping else { throw .unavailable("the daemon is stopping") }
            if let running = templateWork[name] { await running.value }
            templates[name] = nil
            retire(pools.removeValue(forKey: name) ?? [])
            TemplateFiles.remove(templateDir(name))
            templateFailedAt[name] = nil
            let work = Task { await self.prepareTemplate(name, h, hypervisor: hypervisor) }
            templateWork[name] = work
            await work.value
            guard templates[name] != nil else {
                throw .internalError("the template of handler \(name) could not be built (the daemon's log says why)")
            }
        }
        return templateStatus().filter { names.contains($0.handler) }
    }

    /// Loads the saved template, or builds one when there is none, it is stale or it is damaged;
    /// then fills the handler's pool.
    private func prepareTemplate(_ name: String, _ handler: RuntimeHandler, hypervisor: any Hypervisor) async {
        defer { templateWork[name] = nil }
        let inputs = TemplateKey.inputs(handler, qemu: hypervisor.qemuBinary)
        let key = TemplateKey.key(inputs)
        let dir = templateDir(name)
        do {
            if let loaded = try await loadTemplate(dir, key: key, name: name) {
                templates[name] = loaded
                logger.info("template loaded", metadata: ["handler": "\(name)", "dir": "\(dir)"])
            }
        } catch {
            logger.error(
                "template is damaged; it is removed and built again (pods of its handler boot cold meanwhile)",
                metadata: ["handler": "\(name)", "dir": "\(dir)", "error": "\(error.message)"])
            TemplateFiles.remove(dir)
        }
        if templates[name] == nil {
            do {
                let built = try await buildTemplate(name, handler, hypervisor: hypervisor, inputs: inputs, dir: dir)
                templates[name] = built
                templateFailedAt[name] = nil
                logger.info(
                    "template built",
                    metadata: [
                        "handler": "\(name)", "build_ms": "\(Int(built.manifest.buildMs))",
                        "ram_data_mib": "\(built.manifest.ramDataBytes >> 20)",
                    ])
            } catch {
                templateFailedAt[name] = ContinuousClock.now
                logger.error(
                    "template build failed; pods of its handler boot cold",
                    metadata: ["handler": "\(name)", "error": "\(error.message)"])
                return
            }
        }
        await fillPool(name, handler)
    }

    /// The template saved in `dir` when its key is `key`; nil when there is none or it is stale
    /// (removed); throws when it is damaged.
    private func loadTemplate(_ dir: String, key: String, name: String) async throws(CocoonError) -> LoadedTemplate? {
        guard let manifest = TemplateFiles.readManifest(dir) else {
            if FileManager.default.fileExists(atPath: dir) { TemplateFiles.remove(dir) }
            return nil
        }
        guard manifest.key == key else {
            logger.info("saved template is stale (its inputs changed); rebuilding it", metadata: ["dir": "\(dir)"])
            TemplateFiles.remove(dir)
            return nil
        }
        let statePath = TemplateFiles.statePath(dir)
        guard let state = FileManager.default.contents(atPath: statePath),
            try TemplateFiles.digest(ofFile: statePath) == manifest.stateDigest
        else {
            throw .integrity("template state \(statePath) does not match its checksum")
        }
        let size = manifest.memoryMiB << 20
        let fd = try await OffPool.run { () throws(CocoonError) in
            try TemplateFiles.loadRAM(
                from: TemplateFiles.ramPath(dir), size: size, digest: manifest.ramDigest,
                name: "cocoon-template-" + name)
        }
        return LoadedTemplate(ramFD: fd, state: state, manifest: manifest)
    }

    /// Boots the template VM to a ready agent, lets its agent see the host leave, saves its device
    /// state, ends it, seals its RAM and writes the template to `dir`.
    private func buildTemplate(
        _ name: String, _ handler: RuntimeHandler, hypervisor: any Hypervisor, inputs: [String], dir: String
    ) async throws(CocoonError) -> LoadedTemplate {
        let started = ContinuousClock.now
        let building = dir + ".building"
        TemplateFiles.remove(building)
        do {
            try FileManager.default.createDirectory(
                atPath: building, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw .internalError("cannot create the template directory \(building): \(error)")
        }
        let id = "tpl" + String(RecordID.make { _ in false }.prefix(13))
        let uid = try freeVMUID()
        reservedUIDs.insert(uid)
        defer { reservedUIDs.remove(uid) }
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
            runDir: runDir(id), agentTokenFile: tokenFile, user: VMUser(uid: uid, gid: uid))
        spec.origin = .template(ramFD: memfd)
        spec.nic = VMNic(tapFD: -1, mac: BootContract.templateMAC, mtu: 1500, tapName: "")
        let state: Data
        do throws(CocoonError) {
            let vm: VMHandle
            do {
                vm = try await hypervisor.boot(spec)
            } catch {
                throw CocoonError.from(error)
            }
            do throws(CocoonError) {
                let (agent, _) = try await connectAgent(vm, hypervisor: hypervisor, token: token, link: eventLink(id))
                do {
                    // The NIC goes up once, here (its receive ring filled): no clone pays for it again.
                    try await agent.configurePod(
                        PodConfiguration(
                            interface: .init(mac: BootContract.templateMAC, mtu: 1500, addresses: [], routes: [])),
                        timeout: timeouts.agentCall)
                } catch {
                    await agent.close()
                    throw CocoonError.from(error, "template NIC")
                }
                await agent.close()
                // The agent must have seen the host leave, so every clone starts a fresh session.
                try await waitForConsole(vm.consoleLog, "cocoon-agent: host disconnected", within: .seconds(10))
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
                state = saved
            } catch {
                await hypervisor.stop(vm, timeout: .zero)
                throw error
            }
            await hypervisor.stop(vm, timeout: .zero)
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
            let (ramDigest, data) = try await OffPool.run { () throws(CocoonError) in
                try TemplateFiles.saveRAM(memfd, size: size, to: TemplateFiles.ramPath(building))
            }
            let manifest = TemplateManifest(
                key: TemplateKey.key(inputs), inputs: inputs, vcpus: handler.vcpus, memoryMiB: handler.memoryMiB,
                ramDigest: ramDigest, stateDigest: try TemplateFiles.digest(ofFile: TemplateFiles.statePath(building)),
                ramDataBytes: data, builtAtNs: HostProcess.nowNs(), buildMs: buildMs)
            try TemplateFiles.writeManifest(manifest, building)
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

extension TemplateFiles {
    /// Removes a template directory: its known files, then the directory (never recursively).
    static func remove(_ dir: String) {
        for file in ["ram", "state", "template.json", "agent.token", "console.log"] { unlink(dir + "/" + file) }
        rmdir(dir)
    }
}

extension SandboxManager {
    /// Restores a clone of the template for the pod while CNI sets up the pod's network (the
    /// clone's tap waits in the host's namespace), then gives the clone to the pod as a pool VM is
    /// given. Nil when the restore failed: logged, the network undone, the template dropped (loaded
    /// again before the next clone); the caller boots the pod cold.
    func cloneForPod(
        _ template: LoadedTemplate, _ handlerName: String, _ handler: RuntimeHandler, hypervisor: any Hypervisor,
        request: RunRequest, tokenFile: String, record: inout SandboxRecord
    ) async throws(CocoonError) -> (VMHandle, GuestHealth, PodNetworkAttachment)? {
        let cloneID = Self.poolVMID()
        let podID = record.id
        async let restoring = restoredClone(cloneID, handlerName, handler, template, hypervisor: hypervisor)
        let network = await podNetwork(request, id: podID, tap: .existingHost(name: Self.poolTapName(cloneID)))
        let restored = await restoring
        record.startSteps?["vm"] = restored.ms
        record.startSteps?["network"] = network.ms
        switch (restored.result, network.result) {
        case (.success(let clone), .success(let attachment)):
            return try await adoptPoolVM(
                clone, request: request, tokenFile: tokenFile, record: &record, attachment: attachment)
        case (.success(let clone), .failure(let error)):
            await end(clone)
            throw error
        case (.failure(let error), let network):
            logger.error(
                "restoring a pod from its handler's template failed; it boots cold",
                metadata: ["id": "\(podID)", "handler": "\(handlerName)", "error": "\(error.message)"])
            if case .success(let attachment) = network {
                await releaseNetwork(podID: podID, attachment.state, what: "a pod whose clone failed")
            }
            if templates[handlerName] === template { templates[handlerName] = nil }
            record.coldReason = "restoring from the template failed: \(error.message)"
            return nil
        }
    }

    // The two halves of `cloneForPod`, run side by side, as values with their time.
    private func restoredClone(
        _ id: String, _ name: String, _ handler: RuntimeHandler, _ template: LoadedTemplate, hypervisor: any Hypervisor
    ) async -> (result: Result<PoolVM, CocoonError>, ms: Double) {
        let started = ContinuousClock.now
        do {
            let vm = try await startPoolVM(id, name, handler, template, hypervisor: hypervisor)
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
}

/// A template handler as `Status` (verbose) and `cocoonctl info` show it.
public struct TemplateStatus: Sendable, Encodable {
    enum CodingKeys: String, CodingKey {
        case handler, ready, key, vcpus, building
        case memoryMiB = "memory_mib", ramDataMiB = "ram_data_mib", buildMs = "build_ms"
        case poolReady = "pool_ready", poolSize = "pool_size"
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
}

extension SandboxManager {
    /// Every template handler's template and pool.
    public func templateStatus() -> [TemplateStatus] {
        config.handlers.sorted(by: { $0.key < $1.key }).filter { $0.value.start == .template }.map { name, handler in
            let t = templates[name]?.manifest
            return TemplateStatus(
                handler: name, ready: t != nil, building: templateWork[name] != nil && t == nil, key: t?.key,
                vcpus: t?.vcpus, memoryMiB: t?.memoryMiB, ramDataMiB: t.map { $0.ramDataBytes >> 20 },
                buildMs: t.map { ($0.buildMs * 10).rounded() / 10 }, poolReady: pools[name]?.count ?? 0,
                poolSize: handler.poolSize)
        }
    }
}
