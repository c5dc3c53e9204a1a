import AgentAPI
import AgentClient
import Config
import Foundation
import Spawn
import Hypervisor
import Logging

/// Owns the pod sandboxes: their records, their VMs and the agent connections to them. Every
/// state change is persisted before the call returns; on start it finds the VMs of a previous
/// daemon again (`recover`). Operations on one sandbox are serialized; different sandboxes proceed
/// concurrently.
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

    private let config: CocoonConfig
    private let store: SandboxStore
    private let hypervisors: [String: any Hypervisor]
    private let timeouts: Timeouts
    private let logger: Logger
    private var records: [String: SandboxRecord] = [:]
    /// reserved pod name -> sandbox id, including sandboxes still booting.
    private var names: [String: String] = [:]
    private var agents: [String: AgentClient] = [:]
    private var connecting: [String: Task<AgentClient, any Error>] = [:]
    private var locks = KeyedLock()
    private var eventSink: (@Sendable (String, Cocoon_Agent_V1_Event) -> Void)?

    public init(
        config: CocoonConfig, store: SandboxStore, hypervisors: [String: any Hypervisor], timeouts: Timeouts = Timeouts(),
        logger: Logger = Logger(label: "cocoon.sandboxes")
    ) {
        self.config = config
        self.store = store
        self.hypervisors = hypervisors
        self.timeouts = timeouts
        self.logger = logger
    }

    // MARK: recovery

    /// Loads persisted sandboxes. A sandbox whose VM is gone becomes NOTREADY; one left booting by a
    /// crash is removed with its VM (found by name when the crash came before its handle was saved).
    public func recover() async {
        for var record in await store.loadAll() {
            if record.state == .creating {
                // RunPodSandbox never answered for it: end its VM and forget it (the kubelet retries).
                if let vm = record.vm, let hv = hypervisors[vm.backend] { await hv.stop(vm, timeout: .zero) }
                let vmName = "cocoon-" + String(record.id.prefix(12))
                for pid in HostProcess.pids(withArgument: "process=" + vmName) { kill(pid, SIGKILL) }
                try? FileManager.default.removeItem(atPath: config.runDir + "/vms/" + String(record.id.prefix(16)))
                do {
                    try await store.delete(record.id)
                    logger.info("removed a pod sandbox left booting by a crash", metadata: ["id": "\(record.id)"])
                    continue
                } catch {
                    record.state = .notReady
                    record.reason = "daemon restarted while the VM was booting"
                    try? await store.save(record)
                }
            }
            records[record.id] = record
            names[record.reservedName] = record.id
            await refresh(record.id)
        }
        logger.info("recovered sandboxes", metadata: ["count": "\(records.count)", "ready": "\(records.values.filter { $0.state == .ready }.count)"])
    }

    // MARK: CRI operations

    public func run(_ request: RunRequest) async throws(SandboxError) -> String {
        guard let (handlerName, handler) = config.handler(named: request.runtimeHandler) else {
            throw .notFound("runtime handler \"\(request.runtimeHandler)\" is not configured (configured: \(config.handlers.keys.sorted().joined(separator: ", ")))")
        }
        guard let hypervisor = hypervisors[handler.backend.rawValue] else {
            throw .unavailable("hypervisor backend \(handler.backend.rawValue) of handler \(handlerName) is not available")
        }
        let name = request.metadata.reservedName
        if let owner = names[name] {
            throw .alreadyExists("failed to reserve sandbox name \"\(name)\": name \"\(name)\" is reserved for \"\(owner)\"")
        }
        let memory = request.memoryMiBOverride ?? (handler.memoryMiB + request.extraMemoryMiB)
        guard RuntimeHandler.memoryRangeMiB.contains(memory) else {
            throw .invalidArgument("VM memory of \(memory) MiB is outside \(RuntimeHandler.memoryRangeMiB.lowerBound)...\(RuntimeHandler.memoryRangeMiB.upperBound) MiB")
        }
        if let hostMiB = HostMemory.totalMiB(), memory > hostMiB {
            throw .invalidArgument("VM memory of \(memory) MiB exceeds the host's \(hostMiB) MiB")
        }
        let vcpus = request.vcpus ?? handler.vcpus
        let id = SandboxID.make { candidate in records.keys.contains { $0.hasPrefix(candidate.prefix(16)) } }
        names[name] = id
        acquireImmediately(id)
        defer { locks.release(id) }

        let started = ContinuousClock.now
        var record = SandboxRecord(
            id: id, metadata: request.metadata, labels: request.labels, annotations: request.annotations,
            runtimeHandler: handlerName, createdAtNs: HostProcess.nowNs(), state: .creating, vcpus: vcpus,
            memoryMiB: memory, configJSON: request.configJSON)
        records[id] = record
        do throws(SandboxError) {
            try await persist(record)
            let spec = VMSpec(
                id: id, kernel: handler.kernel, initrd: handler.initrd, agentImage: handler.agentImage, vcpus: vcpus, memoryMiB: memory,
                accel: AccelRequest(rawValue: handler.accel.rawValue) ?? .auto, extraKernelArgs: handler.kernelArgs,
                stateDir: store.directory(for: id), runDir: config.runDir + "/vms/" + String(id.prefix(16)))
            let (vm, health) = try await bootUntilAgent(spec, hypervisor: hypervisor, record: &record)
            if !request.sysctls.isEmpty, let agent = agents[id] {
                do {
                    try await agent.configurePod(sysctls: request.sysctls, timeout: timeouts.agentCall)
                } catch {
                    throw SandboxError.from(error, "config.linux.sysctls")
                }
            }
            record.state = .ready
            let elapsed = ContinuousClock.now - started
            record.bootMs = Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
            record.guest = GuestInfo(
                agentVersion: health.agentVersion, apiVersion: health.apiVersion, kernelRelease: health.kernelRelease,
                transport: health.boot.transport, agentStartedMs: Double(health.boot.agentStartedNs) / 1e6,
                channelOpenMs: Double(health.boot.channelOpenNs) / 1e6, memTotalKiB: health.memTotalKib)
            records[id] = record
            try await persist(record)
            logger.info("sandbox ready", metadata: ["id": "\(id)", "pod": "\(name)", "boot_ms": "\(Int(record.bootMs ?? 0))", "accel": "\(vm.accel)"])
            return id
        } catch {
            // Roll back completely: no VM, no files, no name left behind.
            if let vm = records[id]?.vm { await hypervisor.stop(vm, timeout: .zero) }
            if let agent = agents.removeValue(forKey: id) { await agent.close() }
            try? await store.delete(id)
            records[id] = nil
            names[name] = nil
            logger.warning("RunPodSandbox failed", metadata: ["pod": "\(name)", "error": "\(error)"])
            throw error
        }
    }

    /// Stopping an unknown (already removed) sandbox succeeds, as the CRI contract asks.
    public func stop(_ idOrPrefix: String) async throws(SandboxError) {
        guard let id = try resolveIfKnown(idOrPrefix) else { return }
        await lock(id)
        defer { locks.release(id) }
        guard var record = records[id] else { return }
        try await stopVM(&record, reason: "stopped")
    }

    /// Removing an unknown sandbox succeeds (idempotent, as containerd does).
    public func remove(_ idOrPrefix: String) async throws(SandboxError) {
        guard let id = try resolveIfKnown(idOrPrefix) else { return }
        await lock(id)
        defer { locks.release(id) }
        guard var record = records[id] else { return }
        try await stopVM(&record, reason: "removed")
        do {
            try await store.delete(id)
        } catch {
            throw .internalError("cannot remove state of sandbox \(id): \(error)")
        }
        records[id] = nil
        if names[record.reservedName] == id { names[record.reservedName] = nil }
        logger.info("sandbox removed", metadata: ["id": "\(id)"])
    }

    public func status(_ idOrPrefix: String) async throws(SandboxError) -> SandboxRecord {
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
        for (_, agent) in agents {
            try? await agent.detach(timeout: .seconds(2))
            await agent.close()
        }
        agents.removeAll()
    }

    // MARK: what containers need of their sandbox

    /// Where process output and exit events of every sandbox's agent go (sandbox id, event).
    public func setEventSink(_ sink: @escaping @Sendable (String, Cocoon_Agent_V1_Event) -> Void) {
        eventSink = sink
    }

    private func eventForwarder(_ id: String) -> (@Sendable (Cocoon_Agent_V1_Event) -> Void)? {
        guard let sink = eventSink else { return nil }
        return { sink(id, $0) }
    }

    /// The full id and the agent of a READY sandbox (connecting again after a daemon restart).
    public func readyAgent(_ idOrPrefix: String) async throws(SandboxError) -> (id: String, agent: AgentClient) {
        let id = try resolve(idOrPrefix)
        await refresh(id)
        guard let record = records[id] else { throw .notFound("pod sandbox \"\(idOrPrefix)\" not found") }
        guard record.state == .ready, let vm = record.vm else {
            throw .failedPrecondition("pod sandbox \(id) is not ready (\(record.reason ?? record.state.rawValue))")
        }
        if let agent = agents[id] { return (id, agent) }
        // One connection per sandbox, however many callers ask at once (after a daemon restart).
        let connecting = self.connecting[id] ?? Task { [onEvent = eventForwarder(id)] in
            try await AgentClient.connect(vm.agent, timeout: .seconds(2), onEvent: onEvent)
        }
        self.connecting[id] = connecting
        do {
            let agent = try await connecting.value
            self.connecting[id] = nil
            if let existing = agents[id] { return (id, existing) }
            agents[id] = agent
            return (id, agent)
        } catch {
            self.connecting[id] = nil
            throw .unavailable("cannot reach the agent of pod sandbox \(id): \(error)")
        }
    }

    /// Resizes what the pod's containers may use together, within the VM's boot size (memory and
    /// vCPUs cannot grow past what the VM was booted with): the limits of their common cgroup in the guest.
    public func updateResources(_ idOrPrefix: String, _ resources: Cocoon_Agent_V1_Resources) async throws(SandboxError) {
        let (id, agent) = try await readyAgent(idOrPrefix)
        guard let record = records[id] else { throw .notFound("pod sandbox \"\(idOrPrefix)\" not found") }
        let vmBytes = Int64(record.memoryMiB) << 20
        if resources.memoryLimitBytes > vmBytes {
            throw .failedPrecondition(
                "resources.memory_limit_in_bytes \(resources.memoryLimitBytes) exceeds the VM of pod sandbox \(id), booted with \(record.memoryMiB) MiB; a VM's memory cannot grow")
        }
        if resources.cpuQuotaMicros > 0 {
            let period = resources.cpuPeriodMicros > 0 ? resources.cpuPeriodMicros : 100_000
            let cpus = Double(resources.cpuQuotaMicros) / Double(period)
            if cpus > Double(record.vcpus) {
                throw .failedPrecondition(
                    "resources.cpu_quota \(resources.cpuQuotaMicros)/\(period) asks for \(cpus) CPUs; the VM of pod sandbox \(id) was booted with \(record.vcpus) vCPUs and cannot grow")
            }
        }
        do {
            try await agent.updatePodResources(resources, timeout: timeouts.agentCall)
        } catch {
            throw SandboxError.from(error, "update resources of pod sandbox \(id)")
        }
    }

    /// Hot-plugs a read-only image disk into a READY sandbox's VM once; later calls are no-ops.
    public func attachDisk(_ id: String, path: String, serial: String) async throws(SandboxError) {
        await lock(id)
        defer { locks.release(id) }
        guard let record = records[id], record.state == .ready, let vm = record.vm, let hypervisor = hypervisors[vm.backend] else {
            throw .failedPrecondition("pod sandbox \(id) is not ready")
        }
        let disks = record.disks ?? [:]
        if disks[serial] != nil { return }
        let used = Set(disks.values)
        guard let slot = (0..<256).first(where: { !used.contains($0) }) else { throw .failedPrecondition("pod sandbox \(id) has 256 image disks attached") }
        do {
            try await hypervisor.attachDisk(vm, path: path, serial: serial, slot: slot)
        } catch {
            throw SandboxError.from(error, vm: vm.name)
        }
        guard var current = records[id] else { return }
        current.disks = (current.disks ?? [:]).merging([serial: slot]) { $1 }
        records[id] = current
        try await persist(current)
    }

    /// Unmounts (in the guest) and unplugs an image disk no container uses any more.
    public func detachDisk(_ id: String, serial: String) async throws(SandboxError) {
        await lock(id)
        defer { locks.release(id) }
        guard let record = records[id], let slot = record.disks?[serial] else { return }
        if record.state == .ready, let vm = record.vm, let hypervisor = hypervisors[vm.backend], let agent = agents[id] {
            do {
                try await agent.unmountDisk(serial, timeout: timeouts.agentCall)
                try await hypervisor.detachDisk(vm, serial: serial, slot: slot)
            } catch {
                throw .internalError("detach image disk \(serial) from \(id): \(error)")
            }
        }
        guard var current = records[id] else { return }
        current.disks?[serial] = nil
        records[id] = current
        try await persist(current)
    }

    // MARK: internals

    /// Boots the VM and waits for its agent. Under `accel = auto`, a KVM boot whose guest prints
    /// nothing on its console within `kvmConsole` (a /dev/kvm that cannot run the guest: the VM spins
    /// and never boots) is ended and booted again under TCG, and the guest's KVM decision flips.
    private func bootUntilAgent(
        _ initial: VMSpec, hypervisor: any Hypervisor, record: inout SandboxRecord
    ) async throws(SandboxError) -> (VMHandle, Cocoon_Agent_V1_HealthResponse) {
        var spec = initial
        while true {
            let vm: VMHandle
            do {
                vm = try await hypervisor.boot(spec)
            } catch {
                throw SandboxError.from(error, vm: spec.vmName)
            }
            record.vm = vm
            records[record.id] = record
            try await persist(record)
            if vm.accel == "kvm", spec.accel == .auto, let stall = await kvmStall(vm, hypervisor: hypervisor) {
                logger.warning("KVM boot of the pod VM stalled; booting it again under TCG", metadata: ["vm": "\(vm.name)", "why": "\(stall)"])
                await hypervisor.stop(vm, timeout: .zero)
                await hypervisor.kvmFailed(spec, reason: "a pod VM booted under KVM \(stall)")
                spec.accel = .tcg
                continue
            }
            return (vm, try await waitForAgent(vm, hypervisor: hypervisor, id: record.id))
        }
    }

    /// Nil once a KVM guest's agent has announced itself on the console (its first line, within a
    /// second or two of a working KVM launch); otherwise why the boot is considered stalled.
    private func kvmStall(_ vm: VMHandle, hypervisor: any Hypervisor) async -> String? {
        let clock = ContinuousClock()
        let deadline = clock.now + timeouts.kvmConsole
        while true {
            if let head = FileManager.default.contents(atPath: vm.consoleLog)?.prefix(64 << 10),
                String(decoding: head, as: UTF8.self).contains("cocoon-agent")
            {
                return nil
            }
            if await hypervisor.describe(vm) == .exited { return "exited before its guest agent started" }
            if clock.now >= deadline { return "printed no guest agent start on its console within \(timeouts.kvmConsole)" }
            try? await Task.sleep(for: .milliseconds(50))
        }
    }

    private func waitForAgent(_ vm: VMHandle, hypervisor: any Hypervisor, id: String) async throws(SandboxError) -> Cocoon_Agent_V1_HealthResponse {
        let clock = ContinuousClock()
        let deadline = clock.now + timeouts.boot
        var lastError = "no answer"
        while clock.now < deadline {
            if await hypervisor.describe(vm) == .exited {
                throw .internalError("VM \(vm.name) exited during boot; console: \(ConsoleLog.tail(vm.consoleLog))")
            }
            do {
                let agent = try await AgentClient.connect(vm.agent, timeout: .seconds(2), onEvent: eventForwarder(id))
                let remaining = deadline - clock.now
                // The agent answers once the guest has booted and opened its port; QEMU holds the
                // request meanwhile. Check the VM now and then so a dead guest fails fast.
                let health = try await healthWhileAlive(agent, vm: vm, hypervisor: hypervisor, within: remaining)
                guard health.apiVersion == agentAPIVersion else {
                    await agent.close()
                    throw SandboxError.failedPrecondition("guest agent speaks API v\(health.apiVersion), cocoond v\(agentAPIVersion): rebuild the guest image (images/build-guest)")
                }
                agents[id] = agent
                return health
            } catch let error as SandboxError {
                throw error
            } catch {
                lastError = "\(error)"
                try? await Task.sleep(for: .milliseconds(50))
            }
        }
        throw .deadlineExceeded("guest agent of \(vm.name) not ready within \(timeouts.boot) (\(lastError)); console: \(ConsoleLog.tail(vm.consoleLog))")
    }

    private func healthWhileAlive(_ agent: AgentClient, vm: VMHandle, hypervisor: any Hypervisor, within: Duration) async throws -> Cocoon_Agent_V1_HealthResponse {
        try await withThrowingTaskGroup(of: Cocoon_Agent_V1_HealthResponse?.self) { group in
            group.addTask { try await agent.health(timeout: within) }
            group.addTask {
                while await hypervisor.describe(vm) != .exited {
                    try await Task.sleep(for: .milliseconds(250))
                }
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let health = first else {
                await agent.close()
                throw SandboxError.internalError("VM \(vm.name) exited during boot; console: \(ConsoleLog.tail(vm.consoleLog))")
            }
            return health
        }
    }

    /// Shuts the guest down through its agent, then lets the hypervisor end the VM. Idempotent.
    private func stopVM(_ record: inout SandboxRecord, reason: String) async throws(SandboxError) {
        if let vm = record.vm, let hypervisor = hypervisors[vm.backend] {
            if await hypervisor.describe(vm) != .exited {
                var agent = agents.removeValue(forKey: record.id)
                if agent == nil { agent = try? await AgentClient.connect(vm.agent, timeout: .seconds(1)) }
                var graceful = false
                if let agent {
                    graceful = (try? await agent.shutdown(timeout: timeouts.agentCall)) != nil
                    await agent.close()
                }
                await hypervisor.stop(vm, timeout: graceful ? timeouts.shutdown : .zero)
            } else {
                await hypervisor.stop(vm, timeout: .zero)  // releases the run dir
            }
        }
        if let agent = agents.removeValue(forKey: record.id) { await agent.close() }
        if record.state != .notReady || record.stoppedAtNs == nil {
            record.state = .notReady
            record.stoppedAtNs = record.stoppedAtNs ?? HostProcess.nowNs()
            record.reason = record.reason ?? reason
            records[record.id] = record
            try await persist(record)
        }
    }

    /// Marks a READY sandbox NOTREADY when its VM has died. Changes only the record as it is after
    /// the check (other calls may have changed it meanwhile, e.g. attached a disk).
    private func refresh(_ id: String) async {
        guard let vm = records[id]?.vm, records[id]?.state == .ready, let hypervisor = hypervisors[vm.backend] else { return }
        guard await hypervisor.describe(vm) == .exited, var record = records[id], record.state == .ready else { return }
        record.state = .notReady
        record.reason = "VM exited unexpectedly"
        record.stoppedAtNs = HostProcess.nowNs()
        records[id] = record
        logger.warning("sandbox VM is gone", metadata: ["id": "\(id)", "vm": "\(vm.name)"])
        if let agent = agents.removeValue(forKey: id) { await agent.close() }
        try? await store.save(record)
    }

    private func persist(_ record: SandboxRecord) async throws(SandboxError) {
        do {
            try await store.save(record)
        } catch {
            throw .internalError("cannot persist sandbox \(record.id): \(error)")
        }
    }

    private func resolve(_ idOrPrefix: String) throws(SandboxError) -> String {
        try IDPrefix.resolve(idOrPrefix, in: records.keys, what: "pod sandbox", field: "pod_sandbox_id")
    }

    /// The full id, or nil for an id nobody knows (an empty or ambiguous one still fails).
    private func resolveIfKnown(_ idOrPrefix: String) throws(SandboxError) -> String? {
        try IDPrefix.resolveIfKnown(idOrPrefix, in: records.keys, what: "pod sandbox", field: "pod_sandbox_id")
    }

    private func acquireImmediately(_ id: String) {
        _ = locks.tryAcquire(id)
    }

    private func lock(_ id: String) async {
        if locks.tryAcquire(id) { return }
        await withCheckedContinuation { locks.enqueue(id, $0) }
    }
}

extension SandboxError {
    /// An agent's refusal with its code; a broken channel is UNAVAILABLE.
    public static func from(_ error: AgentClientError, _ what: String) -> SandboxError {
        switch error {
        case .agent(let code, let message):
            switch code {
            case "invalidArgument": return .invalidArgument("\(what): \(message)")
            case "notFound": return .notFound("\(what): \(message)")
            case "failedPrecondition": return .failedPrecondition("\(what): \(message)")
            default: return .internalError("\(what): \(message)")
            }
        case .deadlineExceeded: return .deadlineExceeded("\(what): \(error)")
        default: return .unavailable("\(what): \(error)")
        }
    }

    static func from(_ error: HypervisorError, vm: String) -> SandboxError {
        switch error {
        case .invalidSpec(let m): .failedPrecondition(m)
        case .unavailable(let m): .unavailable(m)
        case .bootFailed(let m), .deviceFailed(let m): .internalError(m)
        }
    }
}

/// New sandbox ids: 64 hex characters, like containerd's, unique in their first 16 (the run dir name).
enum SandboxID {
    static func make(taken: (String) -> Bool) -> String {
        var rng = SystemRandomNumberGenerator()
        while true {
            var id = ""
            for _ in 0..<4 { id += String(rng.next() as UInt64, radix: 16).leftPadded(to: 16) }
            if !taken(id) { return id }
        }
    }
}

extension String {
    func leftPadded(to width: Int) -> String { count >= width ? self : String(repeating: "0", count: width - count) + self }
}

/// Reads the end of a VM's console log for error messages.
public enum ConsoleLog {
    public static func tail(_ path: String, bytes: Int = 600) -> String {
        guard let data = FileManager.default.contents(atPath: path), !data.isEmpty else { return "(empty)" }
        return String(decoding: data.suffix(bytes), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// The host's memory, to refuse VMs that could never fit.
enum HostMemory {
    static func totalMiB() -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("MemTotal:") {
            let parts = line.split(separator: " ")
            if parts.count >= 2, let kib = Int(parts[1]) { return kib / 1024 }
        }
        return nil
    }
}
