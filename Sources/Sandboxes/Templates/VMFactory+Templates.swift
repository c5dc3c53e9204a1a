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

    /// How much of the host's memory the memfd holds (shmem; its pages stay while the template is
    /// loaded, whether or not a clone maps them), in bytes.
    var residentBytes: Int64 {
        var st = stat()
        return fstat(ramFD, &st) == 0 ? Int64(st.st_blocks) * 512 : 0
    }
}

/// Templates (`start = "template"`): one VM per handler booted to a ready agent, paused and saved
/// (device state; RAM in a memfd), kept under `<state_root>/templates/<handler>/` and in memory;
/// each pod of the handler is then a clone of it whose RAM is the template's, copy-on-write. A
/// template is loaded (checksums checked) or built in the background, at daemon start and whenever
/// a pod finds none; pods meanwhile boot cold. One whose inputs changed is rebuilt.
extension VMFactory {
    var templatesRoot: String { config.stateRoot + "/templates" }
    func templateDir(_ handlerName: String) -> String { templatesRoot + "/" + handlerName }

    /// Starts loading or building the template of every handler that starts pods from one.
    func prepareTemplates() {
        for (name, handler) in config.handlers.sorted(by: { $0.key < $1.key }) where handler.start == .template {
            _ = template(name, handler)
        }
    }

    /// Ends template builds and pool refills (the daemon is stopping), and the pools' VMs.
    func stop() async {
        stopping = true
        let running = work.values.map(\.task)
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
        guard !stopping, work[name] == nil else { return nil }
        if let failed = failedAt[name], ContinuousClock.now - failed < .seconds(60) { return nil }
        startWork(name) { await self.prepareTemplate(name, handler, hypervisor: hypervisor) }
        return nil
    }

    /// Builds the template of `handler` (empty: of every template handler) again now: the saved
    /// one is removed, the pool drained and refilled from the new one. Running pods are untouched.
    func rebuildTemplates(_ handler: String) async throws(CocoonError) -> [TemplateStatus] {
        let names = try templateHandlers(handler)
        for name in names {
            guard let h = config.handlers[name], let hypervisor = hypervisors[h.backend], hypervisor.makesTemplates
            else {
                throw .failedPrecondition("runtime handler \(name): its hypervisor cannot make templates here")
            }
            guard !stopping else { throw .unavailable("the daemon is stopping") }
            // Whatever runs for it ends first (a refill may start while one is awaited).
            while let running = work[name] { await running.task.value }
            templates[name] = nil
            retire(pools.removeValue(forKey: name) ?? [])
            TemplateFiles.remove(templateDir(name))
            failedAt[name] = nil
            await startWork(name) { await self.prepareTemplate(name, h, hypervisor: hypervisor) }.value
            guard templates[name] != nil else {
                throw .internalError("the template of handler \(name) could not be built (the daemon's log says why)")
            }
        }
        return status().filter { names.contains($0.handler) }
    }

    /// The handlers a rebuild names: `handler`, or every template handler when it is empty.
    private func templateHandlers(_ handler: String) throws(CocoonError) -> [String] {
        if handler.isEmpty {
            let names = config.handlers.filter { $0.value.start == .template }.keys.sorted()
            guard !names.isEmpty else {
                throw .failedPrecondition("no runtime handler starts pods from a template (start = \"template\")")
            }
            return names
        }
        guard let h = config.handlers[handler] else {
            throw .notFound("runtime handler \"\(handler)\" is not configured")
        }
        guard h.start == .template else {
            throw .failedPrecondition("runtime handler \(handler) boots its pods cold (start = \"cold\"): no template")
        }
        return [handler]
    }

    /// Loads the saved template, or builds one when there is none, it is stale or it is damaged;
    /// then fills the handler's pool.
    private func prepareTemplate(_ name: String, _ handler: RuntimeHandler, hypervisor: any Hypervisor) async {
        let inputs = TemplateKey.inputs(handler, qemu: hypervisor.qemuBinary)
        let dir = templateDir(name)
        do {
            if let loaded = try await loadTemplate(dir, key: TemplateKey.key(inputs), name: name) {
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
                failedAt[name] = nil
                logger.info(
                    "template built",
                    metadata: [
                        "handler": "\(name)", "build_ms": "\(Int(built.manifest.buildMs))",
                        "ram_data_mib": "\(built.manifest.ramDataBytes >> 20)",
                    ])
            } catch {
                failedAt[name] = ContinuousClock.now
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
}

extension TemplateFiles {
    /// Removes a template directory: its known files, then the directory (never recursively).
    static func remove(_ dir: String) {
        for file in ["ram", "state", "template.json", "agent.token", "console.log"] { unlink(dir + "/" + file) }
        rmdir(dir)
    }
}
