import AgentClient
import BootContract
import Config
import Containers
import Errors
import Foundation
import Hypervisor
import Logging
import Models
import Persistence
import PodNetwork
import Spawn

/// Owns the pod sandboxes: their records (state changes only through `SandboxRecord.transition`),
/// their VMs and the agent connections to them. Every state change is persisted before the call
/// returns; on start it finds the VMs of a previous daemon again (`recover`). Operations on one
/// sandbox are serialized; different sandboxes proceed concurrently. Provides `PodAgents` to the
/// container manager, with every agent's events on one stream. VMs that are no pod's yet
/// (templates, pool VMs) and VM users belong to its `VMFactory`.
public actor SandboxManager {
    public struct Timeouts: Sendable {
        /// From launching the VM to the agent answering Health.
        public var boot: Duration = .seconds(120)
        public var agentCall: Duration = .seconds(5)
        /// How long a guest gets to power off after the agent's Shutdown before it is killed.
        public var shutdown: Duration = .seconds(10)
        /// A KVM guest prints on its console within a second; one silent this long is not running.
        public var kvmConsole: Duration = .seconds(10)
        public init() {}
    }

    let config: CocoonConfig
    let store: JSONRecordStore<SandboxRecord>
    let hypervisors: [Backend: any Hypervisor]
    let timeouts: Timeouts
    let logger: Logger
    let connect: GuestAgentConnector
    let network: any PodNetworking
    var records: [String: SandboxRecord] = [:]
    /// reserved pod name -> sandbox id, including sandboxes still booting.
    var names: [String: String] = [:]
    var agents: [String: any GuestAgent] = [:]
    private var connecting: [String: Task<any GuestAgent, any Error>] = [:]
    let locks = KeyedLock()
    /// Templates, pools and VM users: the VMs that are no pod's yet.
    let factory: VMFactory
    let dialer: AgentDialer
    public nonisolated let agentEvents: AsyncStream<PodAgentEvent>
    private let eventInput: AsyncStream<PodAgentEvent>.Continuation
    /// Agent calls that are late (pod id, call), for `watchLateCalls`; the newest 64 are kept.
    let lateCalls: AsyncStream<LateCall>
    let lateCallInput: AsyncStream<LateCall>.Continuation

    public init(
        config: CocoonConfig, hypervisors: [any Hypervisor], network: any PodNetworking,
        connect: @escaping GuestAgentConnector = AgentClient.connector,
        timeouts: Timeouts = Timeouts(), logger: Logger = Logger(label: "cocoon.sandboxes")
    ) {
        self.config = config
        self.store = Self.store(stateRoot: config.stateRoot, logger: logger)
        self.hypervisors = Dictionary(hypervisors.map { ($0.backend, $0) }) { first, _ in first }
        self.connect = connect
        self.network = network
        self.timeouts = timeouts
        self.logger = logger
        (agentEvents, eventInput) = AsyncStream.makeStream(of: PodAgentEvent.self)
        (lateCalls, lateCallInput) = AsyncStream.makeStream(of: LateCall.self, bufferingPolicy: .bufferingNewest(64))
        dialer = AgentDialer(connect: connect, bootTimeout: timeouts.boot)
        factory = VMFactory(
            config: config, hypervisors: self.hypervisors, dialer: dialer, agentCall: timeouts.agentCall,
            events: eventInput, logger: logger)
    }

    /// Sandboxes under `<state_root>/sandboxes/<id>/sandbox.json`, beside each VM's console log.
    public static func store(stateRoot: String, logger: Logger = Logger(label: "cocoon.store")) -> JSONRecordStore<
        SandboxRecord
    > {
        JSONRecordStore(
            root: stateRoot + "/sandboxes", layout: .directoryPerRecord(fileName: "sandbox.json"), what: "pod sandbox",
            key: { $0.id },
            logger: logger)
    }

    /// Where an agent's events go: tagged with the pod and its channel's credit, onto the one
    /// stream (the credit bounds what each pod has on it).
    nonisolated func eventLink(_ id: String) -> (credit: EventCredit, forward: @Sendable (AgentEvent) -> Void) {
        let credit = EventCredit()
        return (credit, { [eventInput] in eventInput.yield(PodAgentEvent(podID: id, event: $0, credit: credit)) })
    }

    /// Ends the agents' event stream (the daemon is shutting down; call after `detachAll`).
    public nonisolated func endAgentEvents() {
        eventInput.finish()
        lateCallInput.finish()
    }

    // MARK: recovery

    /// Loads persisted sandboxes. A sandbox whose VM is gone becomes NOTREADY; one left booting by a
    /// crash is removed with its VM (found by name when the crash came before its handle was saved).
    public func recover() async {
        await factory.recoverPool()
        for var record in store.loadAll() {
            if record.state == .creating {
                // RunPodSandbox never answered for it: end its VM and forget it (the kubelet retries).
                if let vm = record.vm, let hv = hypervisors[vm.backend] { await hv.stop(vm, timeout: .zero) }
                // Its handle may never have been saved: each driver ends what it finds by the VM's name.
                for hv in hypervisors.values {
                    await hv.reapOrphan(vmName: VMSpec.vmName(forID: record.id), cgroupParent: record.cgroupParent)
                }
                removeRunDir(record.id)
                releaseShare(record.id)
                await recoverNetwork(of: record)
                do {
                    try store.delete(record.id)
                    logger.info("removed a pod sandbox left booting by a crash", metadata: ["id": "\(record.id)"])
                    continue
                } catch {
                    record.transition(
                        .stopped(reason: "daemon restarted while the VM was booting", atNs: HostProcess.nowNs()))
                    save(record, what: "abandoned sandbox")
                }
            }
            records[record.id] = record
            names[record.reservedName] = record.id
            await refresh(record.id)
            if let current = records[record.id] { await checkNetwork(of: current) }
        }
        await factory.hold(records.values.compactMap(\.vmUID))
        logger.info(
            "recovered sandboxes",
            metadata: ["count": "\(records.count)", "ready": "\(records.values.filter { $0.state == .ready }.count)"])
    }

    // MARK: CRI operations

    /// Stopping an unknown (already removed) sandbox succeeds, as the CRI contract asks.
    public func stop(_ idOrPrefix: String) async throws(CocoonError) {
        guard let id = try resolveIfKnown(idOrPrefix) else { return }
        await locks.acquire(id)
        defer { locks.release(id) }
        guard var record = records[id] else { return }
        try await stopVM(&record, reason: "stopped")
        releaseShare(id)
        try await tearDownNetwork(&record)
    }

    /// Removing an unknown sandbox succeeds (idempotent, as containerd does).
    public func remove(_ idOrPrefix: String) async throws(CocoonError) {
        guard let id = try resolveIfKnown(idOrPrefix) else { return }
        await locks.acquire(id)
        defer { locks.release(id) }
        guard var record = records[id] else { return }
        try await stopVM(&record, reason: "removed")
        releaseShare(id)
        try await tearDownNetwork(&record)
        if let state = record.network { await network.removeNamespace(state) }
        try store.delete(id)
        records[id] = nil
        if names[record.reservedName] == id { names[record.reservedName] = nil }
        if let uid = record.vmUID { await factory.release(uid) }
        logger.info("sandbox removed", metadata: ["id": "\(id)"])
    }

    public func status(_ idOrPrefix: String) async throws(CocoonError) -> SandboxRecord {
        let id = try resolve(idOrPrefix)
        await refresh(id)
        guard let record = records[id] else { throw .notFound("pod sandbox \"\(idOrPrefix)\" not found") }
        return record
    }

    public func list(_ filter: SandboxFilter) async -> [SandboxRecord] {
        var result: [SandboxRecord] = []
        for id in records.keys.sorted() {
            await refresh(id)
            guard let record = records[id] else { continue }
            if filter.matches(record) { result.append(record) }
        }
        return result.sorted { $0.createdAtNs < $1.createdAtNs }
    }

    /// Detaches from every agent (so the guests keep their events for the next daemon) and closes the
    /// connections; VMs keep running (a restarted daemon finds them again).
    public func detachAll() async {
        for (id, agent) in agents {
            do {
                try await agent.detach(timeout: .seconds(2))
            } catch {
                logger.info(
                    "agent not told of the restart; it keeps events anyway",
                    metadata: ["id": "\(id)", "error": "\(error)"])
            }
            await agent.close()
        }
        agents.removeAll()
    }

    /// Resizes what the pod's containers may use together, within the VM's boot size (memory and
    /// vCPUs cannot grow past what the VM was booted with): the limits of their common cgroup in the guest.
    public func updateResources(_ idOrPrefix: String, _ resources: ResourceLimits) async throws(CocoonError) {
        let (id, agent) = try await readyAgent(idOrPrefix)
        guard let record = records[id] else { throw .notFound("pod sandbox \"\(idOrPrefix)\" not found") }
        if record.vm?.backend == .native {
            do {
                return try await agent.updatePodResources(resources, timeout: timeouts.agentCall)
            } catch {
                throw CocoonError.from(error, "update resources of pod sandbox \(id)")
            }
        }
        let vmBytes = Int64(record.memoryMiB) << 20
        if resources.memoryLimitBytes > vmBytes {
            throw .failedPrecondition(
                "resources.memory_limit_in_bytes \(resources.memoryLimitBytes) exceeds the VM of pod sandbox \(id), "
                    + "booted with \(record.memoryMiB) MiB; a VM's memory cannot grow")
        }
        if resources.cpuQuotaMicros > 0 {
            let period = resources.cpuPeriodMicros > 0 ? resources.cpuPeriodMicros : 100_000
            let cpus = Double(resources.cpuQuotaMicros) / Double(period)
            if cpus > Double(record.vcpus) {
                throw .failedPrecondition(
                    "resources.cpu_quota \(resources.cpuQuotaMicros)/\(period) asks for \(cpus) CPUs; the VM of "
                        + "pod sandbox \(id) "
                        + "was booted with \(record.vcpus) vCPUs and cannot grow")
            }
        }
        do {
            try await agent.updatePodResources(resources, timeout: timeouts.agentCall)
        } catch {
            throw CocoonError.from(error, "update resources of pod sandbox \(id)")
        }
    }

    // MARK: what containers need of their sandbox (PodAgents)

    /// The full id and the agent of a READY sandbox, connecting again (with the VM's token) after a
    /// daemon restart or when the channel went away while the VM lives on.
    public func readyAgent(_ idOrPrefix: String) async throws(CocoonError) -> (id: String, agent: any GuestAgent) {
        let id = try resolve(idOrPrefix)
        await refresh(id)
        guard let record = records[id] else { throw .notFound("pod sandbox \"\(idOrPrefix)\" not found") }
        guard record.state == .ready, let vm = record.vm else {
            throw .failedPrecondition("pod sandbox \(id) is not ready (\(record.reason ?? record.state.rawValue))")
        }
        if let agent = agents[id] {
            if agent.isOpen { return (id, agent) }
            agents[id] = nil
            logger.warning("agent channel of a running pod VM is gone; connecting again", metadata: ["id": "\(id)"])
            await agent.close()
        }
        let token = try agentToken(id)
        // One connection per sandbox, however many callers ask at once (after a daemon restart).
        let connecting =
            self.connecting[id]
            ?? Task { [connect, link = eventLink(id)] () async throws -> any GuestAgent in
                try await connect(vm.agent, token, .seconds(2), link.credit, link.forward)
            }
        self.connecting[id] = connecting
        do {
            let agent = try await connecting.value
            self.connecting[id] = nil
            if let existing = agents[id], existing.isOpen { return (id, existing) }
            keep(agent, for: id)
            return (id, agent)
        } catch {
            self.connecting[id] = nil
            throw .unavailable("cannot reach the agent of pod sandbox \(id): \(error)", cause: error)
        }
    }

    public func isReady(_ podID: String) async -> Bool {
        guard let id = try? resolve(podID) else { return false }  // unknown or ambiguous: not a ready pod
        await refresh(id)
        return records[id]?.state == .ready
    }

    /// Hot-plugs a read-only image disk into a READY sandbox's VM once; later calls are no-ops.
    public func attachDisk(_ id: String, path: String, serial: String) async throws(CocoonError) {
        await locks.acquire(id)
        defer { locks.release(id) }
        guard let record = records[id], record.state == .ready, let vm = record.vm,
            let hypervisor = hypervisors[vm.backend]
        else {
            throw .failedPrecondition("pod sandbox \(id) is not ready")
        }
        let disks = record.disks ?? [:]
        if disks[serial] != nil { return }
        let used = Set(disks.values)
        guard let slot = (0..<256).first(where: { !used.contains($0) }) else {
            throw .failedPrecondition("pod sandbox \(id) has 256 image disks attached")
        }
        do {
            try await hypervisor.attachDisk(vm, path: path, serial: serial, slot: slot)
        } catch {
            throw CocoonError.from(error)
        }
        guard var current = records[id] else { return }
        current.disks = (current.disks ?? [:]).merging([serial: slot]) { $1 }
        records[id] = current
        try store.save(current)
    }

    /// Unmounts (in the guest) and unplugs an image disk no container uses any more.
    public func detachDisk(_ id: String, serial: String) async throws(CocoonError) {
        await locks.acquire(id)
        defer { locks.release(id) }
        guard let record = records[id], let slot = record.disks?[serial] else { return }
        if record.state == .ready, let vm = record.vm, let hypervisor = hypervisors[vm.backend], let agent = agents[id]
        {
            do {
                try await agent.unmountDisk(serial, timeout: timeouts.agentCall)
                try await hypervisor.detachDisk(vm, serial: serial, slot: slot)
            } catch {
                throw .internalError("detach image disk \(serial) from \(id): \(error)", cause: error)
            }
        }
        guard var current = records[id] else { return }
        current.disks?[serial] = nil
        records[id] = current
        try store.save(current)
    }

    // MARK: internals

    func runDir(_ id: String) -> String { config.vmRunDir(id) }

    /// The VM's agent token, from its file in the sandbox's state directory.
    func agentToken(_ id: String) throws(CocoonError) -> [UInt8] {
        try AgentTokenFile.read(AgentTokenFile.path(inStateDir: store.directory(for: id)))
    }

    func removeRunDir(_ id: String) {
        do {
            if FileManager.default.fileExists(atPath: runDir(id)) {
                try FileManager.default.removeItem(atPath: runDir(id))
            }
        } catch {
            logger.warning(
                "run directory of a VM left behind", metadata: ["dir": "\(runDir(id))", "error": "\(error)"])
        }
    }

    /// Saves where no caller can be failed (recovery, a VM found dead while listing): the record in
    /// memory is right; the error is logged and the file is stale until the next save.
    func save(_ record: SandboxRecord, what: String) {
        do {
            try store.save(record)
        } catch {
            logger.error("\(what) not persisted", metadata: ["id": "\(record.id)", "error": "\(error)"])
        }
    }

    private func resolve(_ idOrPrefix: String) throws(CocoonError) -> String {
        try RecordID.resolve(idOrPrefix, in: records.keys, what: "pod sandbox", field: "pod_sandbox_id")
    }

    /// The full id, or nil for an id nobody knows (an empty or ambiguous one still fails).
    private func resolveIfKnown(_ idOrPrefix: String) throws(CocoonError) -> String? {
        try RecordID.resolveIfKnown(idOrPrefix, in: records.keys, what: "pod sandbox", field: "pod_sandbox_id")
    }
}

extension SandboxManager: PodAgents {}

extension CocoonError {
    /// A hypervisor failure, with it as the cause.
    static func from(_ error: HypervisorError) -> CocoonError {
        switch error {
        case .invalidSpec(let m): .failedPrecondition(m, cause: error)
        case .unavailable(let m): .unavailable(m, cause: error)
        case .bootFailed(let m), .kvmStartFailed(let m), .deviceFailed(let m): .internalError(m, cause: error)
        }
    }
}
