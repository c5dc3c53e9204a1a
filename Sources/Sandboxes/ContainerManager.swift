import AgentAPI
import AgentClient
import Foundation
import Spawn
import Hypervisor
import Logging
import SwiftProtobuf

/// Owns the containers of every pod: their persisted records, their processes in the pod VMs (through
/// each sandbox's agent), their CRI log files, and the exec sessions of ExecSync. Agent events (output,
/// exits) arrive in order on one stream that `processEvents` drains.
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
        public var process: Cocoon_Agent_V1_Process
        public var hostname: String
        public var readOnlyRootfs: Bool
        /// Masked and read-only paths replacing the defaults; nil keeps the defaults.
        public var paths: (masked: [String], readonly: [String])?
        public var mounts: [ContainerRecord.MountInfo]
        public var resources: Cocoon_Agent_V1_Resources
        public var labels: [String: String]
        public var annotations: [String: String]
        public var logPath: String
        public var stopSignal: Int32
        public var configJSON: String?
        public init(sandboxID: String, name: String, attempt: UInt32, image: String, imageID: String, rootfsImage: String, process: Cocoon_Agent_V1_Process) {
            self.sandboxID = sandboxID
            self.name = name
            self.attempt = attempt
            self.image = image
            self.imageID = imageID
            self.rootfsImage = rootfsImage
            self.process = process
            self.hostname = ""
            self.readOnlyRootfs = false
            self.mounts = []
            self.resources = Cocoon_Agent_V1_Resources()
            self.labels = [:]
            self.annotations = [:]
            self.logPath = ""
            self.stopSignal = 15
        }
    }

    /// What ExecSync returns.
    public struct ExecResult: Sendable {
        public var stdout: [UInt8]
        public var stderr: [UInt8]
        public var exitCode: Int32
    }

    private final class ExecSession {
        var stdout: [UInt8] = []
        var stderr: [UInt8] = []
        var exitCode: Int32?
        var waiter: CheckedContinuation<Void, Never>?
    }

    private let sandboxes: SandboxManager
    private let store: ContainerStore
    private let stateRoot: String
    private let logger: Logger
    private let agentCall: Duration = .seconds(30)
    private var records: [String: ContainerRecord] = [:]
    private var logs: [String: CRILogWriter] = [:]
    private var exitWaiters: [String: [CheckedContinuation<Void, Never>]] = [:]
    private var execs: [String: ExecSession] = [:]
    private var locks = KeyedLock()
    private let events: AsyncStream<(String, Cocoon_Agent_V1_Event)>
    private let eventInput: AsyncStream<(String, Cocoon_Agent_V1_Event)>.Continuation
    private let eventHub = ContainerEventHub()
    static let maxExecOutput = 16 << 20
    static let maxCopiedMountBytes = 64 << 20

    public init(sandboxes: SandboxManager, stateRoot: String, logger: Logger = Logger(label: "cocoon.containers")) {
        self.sandboxes = sandboxes
        self.store = ContainerStore(stateRoot: stateRoot)
        self.stateRoot = stateRoot
        self.logger = logger
        (events, eventInput) = AsyncStream.makeStream(of: (String, Cocoon_Agent_V1_Event).self)
    }

    /// Connects the sandboxes' agents to this manager and loads persisted containers.
    public func recover() async {
        let input = eventInput
        await sandboxes.setEventSink { input.yield(($0, $1)) }
        for record in await store.loadAll() {
            records[record.id] = record
            if !record.logPath.isEmpty { logs[record.id] = CRILogWriter(path: record.logPath) }
        }
        // Reconnect to the pods whose containers run, so their output and exits (including what the
        // agent kept while no daemon was there) flow again.
        for sandboxID in Set(records.values.filter { $0.state == .running }.map(\.sandboxID)) {
            _ = try? await sandboxes.readyAgent(sandboxID)
        }
    }

    /// Applies agent events until `stopEvents`; run by the daemon for its whole life.
    public func processEvents() async {
        for await (_, event) in events { await apply(event) }
    }

    public nonisolated func stopEvents() {
        eventInput.finish()
        endLifecycleEvents()
    }

    /// Ends every lifecycle event stream (the daemon is shutting down).
    public nonisolated func endLifecycleEvents() { eventHub.finish() }

    /// Container lifecycle events from now on, until the daemon stops (GetContainerEvents).
    public nonisolated func lifecycleEvents() -> AsyncStream<ContainerEvent> { eventHub.subscribe() }

    private func publish(_ kind: ContainerEvent.Kind, _ record: ContainerRecord) {
        eventHub.publish(ContainerEvent(kind: kind, containerID: record.id, sandboxID: record.sandboxID, atNs: HostProcess.nowNs(), record: record))
    }

    // MARK: CRI operations

    public func create(_ r: CreateRequest) async throws(SandboxError) -> String {
        let (sandboxID, agent) = try await sandboxes.readyAgent(r.sandboxID)
        guard !r.name.isEmpty else { throw .invalidArgument("config.metadata.name must not be empty") }
        if let existing = records.values.first(where: { $0.sandboxID == sandboxID && $0.name == r.name && $0.attempt == r.attempt }) {
            throw .alreadyExists("container name \"\(r.name)\" (attempt \(r.attempt)) is already in use by \(existing.id) in pod sandbox \(sandboxID)")
        }
        let fileMounts = try ContainerMounts.copy(r.mounts, forbiddenRoots: [stateRoot], limit: Self.maxCopiedMountBytes)
        let id = SandboxID.make { candidate in records.keys.contains { $0.hasPrefix(candidate.prefix(16)) } }
        let serial = "img-" + String(r.imageID.split(separator: ":").last?.prefix(16) ?? "")
        try await sandboxes.attachDisk(sandboxID, path: r.rootfsImage, serial: serial)
        var request = Cocoon_Agent_V1_CreateContainerRequest()
        request.id = id
        request.imageDiskSerial = serial
        request.process = r.process
        request.hostname = r.hostname
        request.readOnlyRootfs = r.readOnlyRootfs
        if let paths = r.paths {
            request.customPaths = true
            request.maskedPaths = paths.masked
            request.readonlyPaths = paths.readonly
        }
        request.mounts = fileMounts
        request.resources = r.resources
        do {
            try await agent.createContainer(request, timeout: agentCall)
        } catch {
            await releaseDisk(sandboxID: sandboxID, serial: serial, except: id)
            throw SandboxError.from(error, "create container \(r.name)")
        }
        let record = ContainerRecord(
            id: id, sandboxID: sandboxID, name: r.name, attempt: r.attempt, image: r.image, imageID: r.imageID, imageRef: r.imageRef,
            imageDiskSerial: serial, labels: r.labels, annotations: r.annotations, logPath: r.logPath, mounts: r.mounts,
            stopSignal: r.stopSignal, state: .created, createdAtNs: HostProcess.nowNs(),
            processJSON: try? r.process.jsonString(), configJSON: r.configJSON)
        records[id] = record
        if !r.logPath.isEmpty { logs[id] = CRILogWriter(path: r.logPath) }
        try await persist(record)
        publish(.created, record)
        logger.info("container created", metadata: ["id": "\(id)", "sandbox": "\(sandboxID)", "image": "\(r.image)"])
        return id
    }

    public func start(_ idOrPrefix: String) async throws(SandboxError) {
        let id = try resolve(idOrPrefix)
        await lock(id)
        defer { locks.release(id) }
        guard var record = records[id] else { throw .notFound("container \"\(idOrPrefix)\" not found") }
        guard record.state == .created else { throw .failedPrecondition("container \(id) is \(record.state.rawValue), not created") }
        let (_, agent) = try await sandboxes.readyAgent(record.sandboxID)
        do {
            record.pid = try await agent.startContainer(id, timeout: agentCall)
        } catch {
            record.state = .exited
            record.exitCode = 128
            record.reason = "StartError"
            record.message = "\(error)"
            record.finishedAtNs = HostProcess.nowNs()
            records[id] = record
            try? await store.save(record)
            publish(.stopped, record)
            throw SandboxError.from(error, "start container \(id)")
        }
        // The exit event may already have been applied (a process that ends at once).
        if records[id]?.state == .created {
            record.state = .running
            record.startedAtNs = HostProcess.nowNs()
            records[id] = record
        } else if var current = records[id] {
            current.startedAtNs = current.startedAtNs ?? HostProcess.nowNs()
            current.pid = record.pid
            records[id] = current
        }
        if let current = records[id] {
            try await persist(current)
            publish(.started, current)
        }
    }

    /// Signals the container (its StopSignal, or SIGTERM), waits `timeout`, then SIGKILL. Idempotent:
    /// stopping an exited or unknown (already removed) container succeeds.
    public func stop(_ idOrPrefix: String, timeout: Duration) async throws(SandboxError) {
        guard let id = try IDPrefix.resolveIfKnown(idOrPrefix, in: records.keys, what: "container", field: "container_id") else { return }
        await lock(id)
        defer { locks.release(id) }
        try await stopLocked(id, timeout: timeout)
    }

    private func stopLocked(_ id: String, timeout: Duration) async throws(SandboxError) {
        await refresh(id)
        guard let record = records[id], record.state == .running else { return }
        guard let (_, agent) = try? await sandboxes.readyAgent(record.sandboxID) else {
            markExited(id, code: 137, reason: "Error", message: "the pod sandbox stopped")
            return
        }
        if timeout > .zero {
            _ = try? await agent.signal(container: id, signal: record.stopSignal, timeout: agentCall)
            if await waitForExit(id, timeout: timeout) { return }
        }
        _ = try? await agent.signal(container: id, signal: SIGKILL, timeout: agentCall)
        if await waitForExit(id, timeout: .seconds(10)) { return }
        throw .deadlineExceeded("container \(id) did not exit 10 s after SIGKILL")
    }

    /// Stops (at once) and removes the container; removing an unknown container succeeds.
    public func remove(_ idOrPrefix: String) async throws(SandboxError) {
        guard let id = try IDPrefix.resolveIfKnown(idOrPrefix, in: records.keys, what: "container", field: "container_id") else { return }
        await lock(id)
        defer { locks.release(id) }
        guard let record = records[id] else { return }
        try await stopLocked(id, timeout: .zero)
        if let (_, agent) = try? await sandboxes.readyAgent(record.sandboxID) {
            do {
                try await agent.removeContainer(id, timeout: agentCall)
            } catch {
                throw SandboxError.from(error, "remove container \(id)")
            }
        }
        records[id] = nil
        logs[id]?.finish()
        logs[id] = nil
        do {
            try await store.delete(id)
        } catch {
            throw .internalError("cannot remove state of container \(id): \(error)")
        }
        await releaseDisk(sandboxID: record.sandboxID, serial: record.imageDiskSerial, except: id)
        publish(.deleted, record)
        logger.info("container removed", metadata: ["id": "\(id)"])
    }

    /// Removes every container of a sandbox (RemovePodSandbox).
    public func removeAll(inSandbox sandboxID: String) async throws(SandboxError) {
        for record in records.values where record.sandboxID == sandboxID { try await remove(record.id) }
    }

    public func status(_ idOrPrefix: String) async throws(SandboxError) -> ContainerRecord {
        let id = try resolve(idOrPrefix)
        await refresh(id)
        guard let record = records[id] else { throw .notFound("container \"\(idOrPrefix)\" not found") }
        return record
    }

    /// Every container, or those of one pod sandbox (only those are refreshed then).
    public func list(inSandbox sandboxID: String? = nil) async -> [ContainerRecord] {
        let ids = records.values.filter { sandboxID == nil || $0.sandboxID == sandboxID }.map(\.id)
        for id in ids { await refresh(id) }
        return ids.compactMap { records[$0] }.sorted { $0.createdAtNs < $1.createdAtNs }
    }

    /// Usage from the container's cgroup in the guest (zeros for a container that is not running).
    public func stats(_ idOrPrefix: String) async throws(SandboxError) -> (record: ContainerRecord, usage: Cocoon_Agent_V1_ContainerStatusResponse) {
        let id = try resolve(idOrPrefix)
        await refresh(id)
        guard let record = records[id] else { throw .notFound("container \"\(idOrPrefix)\" not found") }
        guard record.state == .running, let (_, agent) = try? await sandboxes.readyAgent(record.sandboxID) else {
            return (record, Cocoon_Agent_V1_ContainerStatusResponse())
        }
        do {
            return (record, try await agent.containerStatus(id, timeout: agentCall))
        } catch {
            throw SandboxError.from(error, "stats of container \(id)")
        }
    }

    public func updateResources(_ idOrPrefix: String, _ resources: Cocoon_Agent_V1_Resources) async throws(SandboxError) {
        let id = try resolve(idOrPrefix)
        guard let record = records[id] else { throw .notFound("container \"\(idOrPrefix)\" not found") }
        guard record.state == .created || record.state == .running else { throw .failedPrecondition("container \(id) has exited") }
        let (_, agent) = try await sandboxes.readyAgent(record.sandboxID)
        do {
            try await agent.updateResources(id, resources, timeout: agentCall)
        } catch {
            throw SandboxError.from(error, "update resources of container \(id)")
        }
    }

    public func reopenLog(_ idOrPrefix: String) throws(SandboxError) {
        let id = try resolve(idOrPrefix)
        guard let record = records[id] else { throw .notFound("container \"\(idOrPrefix)\" not found") }
        guard record.state == .running else { throw .failedPrecondition("container \(id) is not running") }
        logs[id]?.reopen()
    }

    /// Runs a command in the running container and collects its output; `timeout` zero means none.
    public func execSync(_ idOrPrefix: String, command: [String], timeout: Duration) async throws(SandboxError) -> ExecResult {
        let id = try resolve(idOrPrefix)
        guard let record = records[id] else { throw .notFound("container \"\(idOrPrefix)\" not found") }
        guard record.state == .running else { throw .failedPrecondition("container \(id) is not running (\(record.state.rawValue))") }
        guard !command.isEmpty, !command[0].isEmpty else { throw .invalidArgument("cmd must not be empty") }
        let (_, agent) = try await sandboxes.readyAgent(record.sandboxID)
        let execID = String(UInt64.random(in: 1...UInt64.max), radix: 16)
        var process = (try? Cocoon_Agent_V1_Process(jsonString: record.processJSON ?? "")) ?? Cocoon_Agent_V1_Process()
        process.args = command
        var request = Cocoon_Agent_V1_ExecRequest()
        request.containerID = id
        request.execID = execID
        request.process = process
        let session = ExecSession()
        execs[execID] = session
        defer { execs[execID] = nil }
        do {
            _ = try await agent.exec(request, timeout: agentCall)
        } catch {
            throw SandboxError.from(error, "exec in container \(id)")
        }
        if session.exitCode == nil {
            let finished = await withTaskGroup(of: Bool.self) { group -> Bool in
                group.addTask { await self.waitForExec(execID); return true }
                if timeout > .zero {
                    group.addTask { try? await Task.sleep(for: timeout); return false }
                }
                let first = await group.next() ?? false
                group.cancelAll()
                if !first { self.resumeExec(execID) }
                return first
            }
            if !finished || session.exitCode == nil {
                _ = try? await agent.signal(container: id, exec: execID, signal: SIGKILL, timeout: agentCall)
                throw .deadlineExceeded("command \(command) in container \(id) timed out after \(timeout)")
            }
        }
        return ExecResult(stdout: session.stdout, stderr: session.stderr, exitCode: session.exitCode ?? -1)
    }

    // MARK: events

    private func apply(_ event: Cocoon_Agent_V1_Event) async {
        switch event.kind {
        case .output(let o)?:
            if o.execID.isEmpty {
                logs[o.containerID]?.write(stream: o.stream == .stderr ? "stderr" : "stdout", [UInt8](o.data))
            } else if let session = execs[o.execID] {
                if o.stream == .stderr {
                    if session.stderr.count < Self.maxExecOutput { session.stderr += o.data }
                } else if session.stdout.count < Self.maxExecOutput {
                    session.stdout += o.data
                }
            }
        case .exit(let e)?:
            if e.execID.isEmpty {
                let reason = e.oomKilled ? "OOMKilled" : (e.exitCode == 0 ? "Completed" : "Error")
                markExited(e.containerID, code: e.exitCode, reason: reason, message: "")
                if let record = records[e.containerID] { try? await store.save(record) }
            } else if let session = execs[e.execID] {
                session.exitCode = e.exitCode
                resumeExec(e.execID)
            }
        default:
            break
        }
    }

    private func markExited(_ id: String, code: Int32, reason: String, message: String) {
        guard var record = records[id], record.state != .exited else { return }
        record.state = .exited
        record.exitCode = code
        record.reason = reason
        record.message = message.isEmpty ? nil : message
        record.finishedAtNs = HostProcess.nowNs()
        records[id] = record
        logs[id]?.finish()
        publish(.stopped, record)
        for waiter in exitWaiters.removeValue(forKey: id) ?? [] { waiter.resume() }
    }

    private func waitForExec(_ execID: String) async {
        guard let session = execs[execID], session.exitCode == nil else { return }
        await withCheckedContinuation { session.waiter = $0 }
    }

    private func resumeExec(_ execID: String) {
        guard let session = execs[execID], let waiter = session.waiter else { return }
        session.waiter = nil
        waiter.resume()
    }

    /// True when the container exited within `timeout`.
    private func waitForExit(_ id: String, timeout: Duration) async -> Bool {
        if records[id]?.state != .running { return true }
        return await withTaskGroup(of: Bool.self) { group -> Bool in
            group.addTask {
                await self.waitExit(id)
                return true
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            if !first { self.wakeExitWaiters(id) }
            return first && self.records[id]?.state != .running
        }
    }

    private func waitExit(_ id: String) async {
        if records[id]?.state != .running { return }
        await withCheckedContinuation { exitWaiters[id, default: []].append($0) }
    }

    private func wakeExitWaiters(_ id: String) {
        for waiter in exitWaiters.removeValue(forKey: id) ?? [] { waiter.resume() }
    }

    // MARK: internals

    /// A running container whose sandbox is no longer ready has ended with it.
    private func refresh(_ id: String) async {
        guard let record = records[id], record.state == .running else { return }
        if let sandbox = try? await sandboxes.status(record.sandboxID), sandbox.state == .ready { return }
        markExited(id, code: 137, reason: "Error", message: "the pod sandbox stopped")
        if let updated = records[id] { try? await store.save(updated) }
    }

    private func releaseDisk(sandboxID: String, serial: String, except id: String) async {
        guard !records.values.contains(where: { $0.sandboxID == sandboxID && $0.imageDiskSerial == serial && $0.id != id }) else { return }
        do {
            try await sandboxes.detachDisk(sandboxID, serial: serial)
        } catch {
            logger.warning("image disk left attached", metadata: ["sandbox": "\(sandboxID)", "serial": "\(serial)", "error": "\(error)"])
        }
    }

    private func persist(_ record: ContainerRecord) async throws(SandboxError) {
        do {
            try await store.save(record)
        } catch {
            throw .internalError("cannot persist container \(record.id): \(error)")
        }
    }

    private func resolve(_ idOrPrefix: String) throws(SandboxError) -> String {
        try IDPrefix.resolve(idOrPrefix, in: records.keys, what: "container", field: "container_id")
    }

    private func lock(_ id: String) async {
        if locks.tryAcquire(id) { return }
        await withCheckedContinuation { locks.enqueue(id, $0) }
    }
}
