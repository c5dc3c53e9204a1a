import AgentClient
import ContainerLogs
import Errors
import Foundation
import Logging
import Models
import Persistence
import Spawn
import Volumes

/// Owns the containers of every pod: their persisted records (state changes only through
/// `ContainerRecord.transition`), their processes in the pod VMs (through `PodAgents`), their CRI
/// log files, and the exec sessions of ExecSync. Agent events (output, exits) arrive in order on the
/// pods' event stream that `processEvents` drains; each is checked against the pod it came from.
public actor ContainerManager {
    /// What CreateContainer resolved: the image's disk and config merged with the CRI request.
    public struct CreateRequest: Sendable {
        public var sandboxID: String
        public var name: String
        public var attempt: UInt32
        public var image: String
        public var imageID: String
        public var imageRef: String?
        public var rootfsImage: String
        public var process: ProcessSpec
        public var hostname: String = ""
        public var readOnlyRootfs = false
        /// Masked and read-only paths replacing the defaults; nil keeps the defaults.
        public var paths: ContainerCreateSpec.PathOverrides?
        public var mounts: [ContainerRecord.MountInfo] = []
        public var resources = ResourceLimits()
        public var labels: [String: String] = [:]
        public var annotations: [String: String] = [:]
        public var logPath = ""
        public var stopSignal: Int32 = 15
        public var configJSON: String?
        public var stdio = ContainerRecord.StdioConfig()
        /// A privileged container: every device of the VM may be opened.
        public var allDevices = false
        /// The PID namespace its processes live in; a target must be a container of the same pod.
        public var pidNamespace = PIDNamespaceMode.own
        public init(
            sandboxID: String, name: String, attempt: UInt32, image: String, imageID: String, rootfsImage: String,
            process: ProcessSpec
        ) {
            self.sandboxID = sandboxID
            self.name = name
            self.attempt = attempt
            self.image = image
            self.imageID = imageID
            self.rootfsImage = rootfsImage
            self.process = process
        }
    }

    /// What ExecSync returns.
    public struct ExecResult: Sendable {
        public var stdout: [UInt8]
        public var stderr: [UInt8]
        public var exitCode: Int32
    }

    let pods: any PodAgents
    let store: JSONRecordStore<ContainerRecord>
    let stateRoot: String
    /// Where no host mount may come from: the daemon's state and run directories.
    let forbiddenMountRoots: [String]
    let logger: Logger
    let agentCall: Duration
    var records: [String: ContainerRecord] = [:]
    /// Events a pod's agent sent about containers that are not that pod's (forged, or stale), per
    /// pod: dropped, counted, and logged at the first and every 1000th.
    public internal(set) var droppedEvents: [String: Int] = [:]
    var logs: [String: CRILogWriter] = [:]
    /// Each running container's last usage its guest answered (stands in when the guest is late).
    var usageReadings: [String: UsageReading] = [:]
    var exitWaiters: [String: [CheckedContinuation<Void, Never>]] = [:]
    var execs = ExecSessions()
    let routes: StreamRoutes
    /// Containers created with stdin_once whose stdin the first attach has closed.
    var stdinOnceUsed: Set<String> = []
    private let locks = KeyedLock()
    /// Told, after each removal, the root filesystems the remaining containers use (`onRootfsUseChange`).
    var rootfsUseChanged: (@Sendable (Set<String>) async -> Void)?
    let eventHub = ContainerEventHub()
    /// What one container's copied mounts may hold: its CreateContainer must fit one agent frame (16 MiB).
    static let maxCopiedMountBytes = 12 << 20

    /// `runDir`: the daemon's run directory, which no copied mount may come from (as the state root).
    public init(
        pods: any PodAgents, stateRoot: String, runDir: String? = nil, agentCall: Duration = .seconds(30),
        logger: Logger = Logger(label: "cocoon.containers")
    ) {
        self.forbiddenMountRoots = [stateRoot] + (runDir.map { [$0] } ?? [])
        self.pods = pods
        self.store = JSONRecordStore(
            root: stateRoot + "/containers", layout: .directoryPerRecord(fileName: "container.json"), what: "container",
            key: { $0.id }, logger: logger)
        self.stateRoot = stateRoot
        self.agentCall = agentCall
        self.logger = logger
        self.routes = StreamRoutes(window: Self.execWindow, logger: logger)
    }

    /// Loads persisted containers and reconnects to the pods whose containers run, so their output
    /// and exits (including what the agent kept while no daemon was there) flow again.
    public func recover() async {
        for var record in store.loadAll() {
            if record.adoptLegacyProcess() {
                do {
                    try store.save(record)
                } catch {
                    logger.warning(
                        "container record not upgraded on disk", metadata: ["id": "\(record.id)", "error": "\(error)"])
                }
            }
            records[record.id] = record
            if !record.logPath.isEmpty, record.agentWritesLog != true {
                logs[record.id] = CRILogWriter(path: record.logPath)
            }
        }
        for sandboxID in Set(records.values.filter { $0.state == .running }.map(\.sandboxID)) {
            do {
                _ = try await pods.readyAgent(sandboxID)
            } catch {
                // Not an error of recovery: the containers of a pod that is gone end with it (`refresh`).
                logger.info(
                    "pod of running containers not reachable", metadata: ["sandbox": "\(sandboxID)", "why": "\(error)"])
            }
        }
    }

    /// Applies the pods' agent events until their stream ends; run by the daemon for its whole life.
    public func processEvents() async {
        for await tagged in pods.agentEvents {
            await apply(tagged)
            tagged.handled()
        }
    }

    /// Ends every lifecycle event stream (the daemon is shutting down).
    public nonisolated func endLifecycleEvents() { eventHub.finish() }

    /// Container lifecycle events from now on, until the daemon stops (GetContainerEvents).
    public nonisolated func lifecycleEvents() -> AsyncStream<ContainerEvent> { eventHub.subscribe() }

    // MARK: CRI operations

    public func create(_ r: CreateRequest) async throws(CocoonError) -> String {
        let (sandboxID, agent) = try await pods.readyAgent(r.sandboxID)
        try checkNameUnused(r, in: sandboxID)
        if case .target(let target) = r.pidNamespace, records[target]?.sandboxID != sandboxID {
            throw .notFound(
                "config.linux.security_context.namespace_options.target_id: container \"\(target)\" is not in pod "
                    + sandboxID)
        }
        let id = RecordID.make { prefix in records.keys.contains { $0.hasPrefix(prefix) } }
        // Volumes go through the pod's shared directory; a pod without one gets copies.
        let shared = try await pods.shareVolumes(sandboxID, container: id, r.mounts.map(\.volume))
        var fileMounts: [FileMount] = []
        if shared == nil {
            fileMounts = try await ContainerMounts.copyOffActor(
                r.mounts, forbiddenRoots: forbiddenMountRoots, limit: Self.maxCopiedMountBytes)
        }
        let serial = "img-" + String(r.imageID.split(separator: ":").last?.prefix(16) ?? "")
        do {
            try await pods.attachDisk(sandboxID, path: r.rootfsImage, serial: serial)
        } catch {
            await pods.unshareVolumes(sandboxID, container: id)
            throw error
        }
        var spec = ContainerCreateSpec(
            id: id, imageDiskSerial: serial, process: r.process, hostname: r.hostname, readOnlyRootfs: r.readOnlyRootfs,
            paths: r.paths,
            mounts: fileMounts, resources: r.resources)
        spec.sharedMounts = shared ?? []
        spec.stdin = r.stdio.stdin
        spec.tty = r.stdio.tty
        spec.allDevices = r.allDevices
        spec.pidNamespace = r.pidNamespace
        let agentLog = r.logPath.isEmpty ? false : await pods.agentWritesLogs(sandboxID)
        if agentLog { spec.logPath = r.logPath }
        do {
            try await agent.createContainer(spec, timeout: agentCall)
        } catch {
            await pods.unshareVolumes(sandboxID, container: id)
            await releaseDisk(sandboxID: sandboxID, serial: serial, except: id)
            throw await agentFailure(error, "create container \(r.name)", pod: sandboxID)
        }
        var record = Self.newRecord(r, id: id, sandboxID: sandboxID, serial: serial)
        record.agentWritesLog = agentLog ? true : nil
        do {
            try store.save(record)
        } catch {
            // Nothing persisted, nothing kept: the guest forgets the container too.
            // best effort; the save error is the one to report
            _ = try? await agent.removeContainer(id, timeout: agentCall)
            await pods.unshareVolumes(sandboxID, container: id)
            await releaseDisk(sandboxID: sandboxID, serial: serial, except: id)
            throw error
        }
        records[id] = record
        if !r.logPath.isEmpty && !agentLog { logs[id] = CRILogWriter(path: r.logPath) }
        publish(.created, record)
        logger.info("container created", metadata: ["id": "\(id)", "sandbox": "\(sandboxID)", "image": "\(r.image)"])
        return id
    }

    /// Refuses a name and attempt that a container of the same pod already has.
    private func checkNameUnused(_ r: CreateRequest, in sandboxID: String) throws(CocoonError) {
        guard !r.name.isEmpty else { throw .invalidArgument("config.metadata.name must not be empty") }
        if let existing = records.values.first(where: {
            $0.sandboxID == sandboxID && $0.name == r.name && $0.attempt == r.attempt
        }) {
            throw .alreadyExists(
                "container name \"\(r.name)\" (attempt \(r.attempt)) is already in use by \(existing.id) in pod "
                    + "sandbox \(sandboxID)"
            )
        }
    }

    /// The record of a container just created in the guest, stamped with the current time.
    private static func newRecord(_ r: CreateRequest, id: String, sandboxID: String, serial: String)
        -> ContainerRecord
    {
        var record = ContainerRecord(
            id: id, sandboxID: sandboxID, name: r.name, attempt: r.attempt, image: r.image, imageID: r.imageID,
            imageRef: r.imageRef,
            imageDiskSerial: serial, labels: r.labels, annotations: r.annotations, logPath: r.logPath, mounts: r.mounts,
            stopSignal: r.stopSignal, createdAtNs: HostProcess.nowNs(), process: r.process, configJSON: r.configJSON)
        record.stdio = r.stdio
        record.rootfsImage = r.rootfsImage
        return record
    }

    public func start(_ idOrPrefix: String) async throws(CocoonError) {
        let id = try resolve(idOrPrefix)
        await locks.acquire(id)
        defer { locks.release(id) }
        guard let record = records[id] else { throw .notFound("container \"\(idOrPrefix)\" not found") }
        guard record.state == .created else {
            throw .failedPrecondition("container \(id) is \(record.state.rawValue), not created")
        }
        let (_, agent) = try await pods.readyAgent(record.sandboxID)
        let pid: Int32
        do {
            pid = try await agent.startContainer(id, timeout: agentCall)
        } catch {
            let failure = await agentFailure(error, "start container \(id)", pod: record.sandboxID)
            try change(id, .exited(code: 128, reason: "StartError", message: "\(error)", atNs: HostProcess.nowNs()))
            throw failure
        }
        // The exit event may already have been applied (a process that ends at once): then this
        // only records the pid and start time.
        try change(id, .started(pid: pid, atNs: HostProcess.nowNs()))
    }

    /// Signals the container (its StopSignal, or SIGTERM), waits `timeout`, then SIGKILL. Idempotent:
    /// stopping an exited or unknown (already removed) container succeeds.
    public func stop(_ idOrPrefix: String, timeout: Duration) async throws(CocoonError) {
        guard
            let id = try RecordID.resolveIfKnown(idOrPrefix, in: records.keys, what: "container", field: "container_id")
        else { return }
        await locks.acquire(id)
        defer { locks.release(id) }
        try await stopLocked(id, timeout: timeout)
    }

    func stopLocked(_ id: String, timeout: Duration) async throws(CocoonError) {
        try await refresh(id)
        guard let record = records[id], record.state == .running else { return }
        let agent: any GuestAgent
        do {
            agent = try await pods.readyAgent(record.sandboxID).agent
        } catch {
            try change(
                id, .exited(code: 137, reason: "Error", message: "the pod sandbox stopped", atNs: HostProcess.nowNs()))
            return
        }
        // A failed signal is not the end: the wait and then SIGKILL decide.
        if timeout > .zero {
            await signal(agent, id, record.stopSignal)
            if await waitForExit(id, timeout: timeout) { return }
        }
        await signal(agent, id, SIGKILL)
        if await waitForExit(id, timeout: .seconds(10)) { return }
        throw .deadlineExceeded("container \(id) did not exit 10 s after SIGKILL")
    }

    func signal(_ agent: any GuestAgent, _ id: String, _ signal: Int32) async {
        do {
            try await agent.signal(container: id, exec: "", signal: signal, timeout: agentCall)
        } catch {
            logger.warning(
                "signal not delivered", metadata: ["id": "\(id)", "signal": "\(signal)", "error": "\(error)"])
        }
    }

    /// Stops (at once) and removes the container; removing an unknown container succeeds.
    public func remove(_ idOrPrefix: String) async throws(CocoonError) {
        guard
            let id = try RecordID.resolveIfKnown(idOrPrefix, in: records.keys, what: "container", field: "container_id")
        else { return }
        await locks.acquire(id)
        defer { locks.release(id) }
        guard let record = records[id] else { return }
        try await stopLocked(id, timeout: .zero)
        // a pod that is not ready has no container left to remove
        if let agent = try? await pods.readyAgent(record.sandboxID).agent {
            do {
                try await agent.removeContainer(id, timeout: agentCall)
            } catch {
                throw CocoonError.from(error, "remove container \(id)")
            }
        }
        await pods.unshareVolumes(record.sandboxID, container: id)
        try store.delete(id)
        records[id] = nil
        usageReadings[id] = nil
        logs[id]?.finish()
        logs[id] = nil
        await releaseDisk(sandboxID: record.sandboxID, serial: record.imageDiskSerial, except: id)
        publish(.deleted, record)
        await rootfsUseChanged?(rootfsImagesInUse())
        logger.info("container removed", metadata: ["id": "\(id)"])
    }

    /// Removes every container of a sandbox (RemovePodSandbox).
    public func removeAll(inSandbox sandboxID: String) async throws(CocoonError) {
        for record in records.values where record.sandboxID == sandboxID { try await remove(record.id) }
    }

    public func status(_ idOrPrefix: String) async throws(CocoonError) -> ContainerRecord {
        let id = try resolve(idOrPrefix)
        try await refresh(id)
        guard let record = records[id] else { throw .notFound("container \"\(idOrPrefix)\" not found") }
        return record
    }

    /// Every container, or those of one pod sandbox (only those are refreshed then).
    public func list(inSandbox sandboxID: String? = nil) async throws(CocoonError) -> [ContainerRecord] {
        let ids = records.values.filter { sandboxID == nil || $0.sandboxID == sandboxID }.map(\.id)
        for id in ids { try await refresh(id) }
        return ids.compactMap { records[$0] }.sorted { $0.createdAtNs < $1.createdAtNs }
    }

    public func updateResources(_ idOrPrefix: String, _ resources: ResourceLimits) async throws(CocoonError) {
        let id = try resolve(idOrPrefix)
        guard let record = records[id] else { throw .notFound("container \"\(idOrPrefix)\" not found") }
        guard record.state != .exited else { throw .failedPrecondition("container \(id) has exited") }
        let (_, agent) = try await pods.readyAgent(record.sandboxID)
        do {
            try await agent.updateResources(id, resources, timeout: agentCall)
        } catch {
            throw CocoonError.from(error, "update resources of container \(id)")
        }
    }

    // MARK: internals

    /// A running container whose pod is no longer READY has ended with it.
    func refresh(_ id: String) async throws(CocoonError) {
        guard let record = records[id], record.state == .running else { return }
        if await pods.isReady(record.sandboxID) { return }
        try change(
            id, .exited(code: 137, reason: "Error", message: "the pod sandbox stopped", atNs: HostProcess.nowNs()))
    }

    func releaseDisk(sandboxID: String, serial: String, except id: String) async {
        guard
            !records.values.contains(where: { $0.sandboxID == sandboxID && $0.imageDiskSerial == serial && $0.id != id }
            )
        else { return }
        do {
            try await pods.detachDisk(sandboxID, serial: serial)
        } catch {
            logger.warning(
                "image disk left attached",
                metadata: ["sandbox": "\(sandboxID)", "serial": "\(serial)", "error": "\(error)"])
        }
    }

    func resolve(_ idOrPrefix: String) throws(CocoonError) -> String {
        try RecordID.resolve(idOrPrefix, in: records.keys, what: "container", field: "container_id")
    }
}

extension ContainerRecord.Event {
    var lifecycleKind: ContainerEvent.Kind {
        switch self {
        case .started: .started
        case .exited: .stopped
        }
    }
}
