import AgentClient
import Config
import Containers
import Errors
import Foundation
import Hypervisor
import Logging
import Models
import Spawn

/// Owns the VMs that are no pod's (yet) and what makes them: each template handler's template
/// (loaded or built in the background), its warm pool of restored clones, and the VM users held by
/// templates being built, pool VMs and pods being started. The pod manager asks it where a pod
/// starts from (`startChoice`) and for clones; the work it starts is its own and ends with `stop`.
actor VMFactory {
    let config: CocoonConfig
    let hypervisors: [Backend: any Hypervisor]
    let dialer: AgentDialer
    let agentCall: Duration
    let logger: Logger
    private let events: AsyncStream<PodAgentEvent>.Continuation
    /// Templates ready for clones, by handler name; the work loading or building them and filling
    /// their pools (owned here, cancelled by `stop`); when a build last failed.
    var templates: [String: LoadedTemplate] = [:]
    var work: [String: Work] = [:]
    private var lastWorkID: UInt64 = 0
    var failedAt: [String: ContinuousClock.Instant] = [:]
    var stopping = false
    /// Clones restored ahead of time, by handler name.
    var pools: [String: [PoolVM]] = [:]
    /// Every VM user held: by a pod (from its start until it is removed), a template being built or
    /// a pool VM.
    private var heldUIDs: Set<UInt32> = []

    init(
        config: CocoonConfig, hypervisors: [Backend: any Hypervisor], dialer: AgentDialer, agentCall: Duration,
        events: AsyncStream<PodAgentEvent>.Continuation, logger: Logger
    ) {
        self.config = config
        self.hypervisors = hypervisors
        self.dialer = dialer
        self.agentCall = agentCall
        self.events = events
        self.logger = logger
    }

    /// Where the agent events of a VM that belongs to no pod yet go: tagged with its owner's id of
    /// the moment (a pool VM's own id until a pod takes it).
    nonisolated func eventLink(_ owner: EventOwner) -> (credit: EventCredit, forward: @Sendable (AgentEvent) -> Void) {
        let credit = EventCredit()
        return (credit, { [events] in events.yield(PodAgentEvent(podID: owner.id, event: $0, credit: credit)) })
    }

    /// A task of the factory's (a template's loading or building, a pool's refill, retiring VMs)
    /// and the number that tells it from the next one under the same key.
    struct Work {
        let id: UInt64
        let task: Task<Void, Never>
    }

    /// Starts `body` as the work under `key` (cancelled by `stop`); its entry goes when it ends,
    /// unless a later work has taken the key meanwhile.
    @discardableResult
    func startWork(_ key: String, _ body: @escaping @Sendable () async -> Void) -> Task<Void, Never> {
        lastWorkID &+= 1
        let id = lastWorkID
        // Runs on this actor: it cannot end before its entry below is in.
        let task = Task {
            await body()
            if self.work[key]?.id == id { self.work[key] = nil }
        }
        work[key] = Work(id: id, task: task)
        return task
    }

    // MARK: VM users

    /// Reserves the lowest VM user that nothing holds (a pod, stopped ones included until they are
    /// removed; a template being built; a pool VM) and no process runs as: a VM process that
    /// outlived its pod (one that escaped its end) never shares a user with a new VM.
    func reserveUID() throws(CocoonError) -> UInt32 {
        let taken = heldUIDs.union(HostProcess.liveUIDs())
        var uid = config.vmUIDBase
        while taken.contains(uid) {
            uid += 1
            guard uid < config.vmUIDBase + CocoonConfig.vmUIDCount else {
                throw .failedPrecondition("all \(CocoonConfig.vmUIDCount) VM users from vm_uid_base are taken")
            }
        }
        heldUIDs.insert(uid)
        return uid
    }

    /// The VM users of the pods a previous daemon left (recovery, before any start).
    func hold(_ uids: some Sequence<UInt32>) { heldUIDs.formUnion(uids) }

    /// Lets a VM user go: its VM is gone and so is the pod that held it, if any.
    func release(_ uid: UInt32) { heldUIDs.remove(uid) }

    // MARK: where a pod starts from

    /// Where a pod of `handler` starts from: a pool VM (it leaves the pool now), a clone of the
    /// template, or a cold boot (template not ready yet, or a VM size other than the template's).
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

    /// Forgets the handler's template after a clone of it failed (loaded again before the next
    /// clone), unless another one has replaced it meanwhile.
    func drop(_ template: LoadedTemplate, of name: String) {
        if templates[name] === template { templates[name] = nil }
    }

    /// Every template handler's template and pool.
    func status() -> [TemplateStatus] {
        config.handlers.sorted(by: { $0.key < $1.key }).filter { $0.value.start == .template }.map { name, handler in
            let loaded = templates[name]
            let t = loaded?.manifest
            return TemplateStatus(
                handler: name, ready: t != nil, building: work[name] != nil && t == nil, key: t?.key,
                vcpus: t?.vcpus, memoryMiB: t?.memoryMiB, ramDataMiB: t.map { $0.ramDataBytes >> 20 },
                buildMs: t.map { ($0.buildMs * 10).rounded() / 10 }, poolReady: pools[name]?.count ?? 0,
                poolSize: handler.poolSize, ramResidentMiB: loaded.map { $0.residentBytes >> 20 })
        }
    }
}

/// How a pod's VM will start.
enum StartChoice: Sendable {
    /// A boot, and why (nil: the handler boots cold anyway).
    case cold(reason: String?)
    case template(LoadedTemplate)
    case pool(PoolVM)
}

extension CocoonConfig {
    /// A VM's run directory (sockets, QEMU's pid file), short enough for a socket path.
    func vmRunDir(_ id: String) -> String { runDir + "/vms/" + String(id.prefix(16)) }
}
