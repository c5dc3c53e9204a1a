import AgentClient
import Containers
import Errors
import Synchronization
import Volumes

/// Pods without VMs, for the container manager: one fake agent per pod, readiness a test can flip,
/// attached disks recorded, events delivered on the stream the manager drains.
final class FakePodAgents: PodAgents, Sendable {
    struct State {
        var agents: [String: FakeGuestAgent] = [:]
        var ready: Set<String> = []
        var disks: [String: Set<String>] = [:]
    }
    let state = Mutex(State())
    let agentEvents: AsyncStream<PodAgentEvent>
    private let input: AsyncStream<PodAgentEvent>.Continuation

    init(pods: [String]) {
        (agentEvents, input) = AsyncStream.makeStream(of: PodAgentEvent.self)
        for pod in pods { addPod(pod) }
    }

    @discardableResult
    func addPod(_ id: String) -> FakeGuestAgent {
        let agent = FakeGuestAgent()
        agent.state.withLock { $0.onEvent = { [input] in input.yield(PodAgentEvent(podID: id, event: $0)) } }
        state.withLock {
            $0.agents[id] = agent
            $0.ready.insert(id)
        }
        return agent
    }

    func agent(_ pod: String) -> FakeGuestAgent? { state.withLock { $0.agents[pod] } }
    func setReady(_ pod: String, _ ready: Bool) {
        state.withLock {
            if ready { $0.ready.insert(pod) } else { $0.ready.remove(pod) }
        }
    }
    func disks(_ pod: String) -> Set<String> { state.withLock { $0.disks[pod] ?? [] } }
    /// An event as if `pod`'s agent had sent it (a lying guest may name another pod's container).
    func send(_ event: AgentEvent, from pod: String) { input.yield(PodAgentEvent(podID: pod, event: event)) }
    func finish() { input.finish() }

    func readyAgent(_ podID: String) async throws(CocoonError) -> (id: String, agent: any GuestAgent) {
        let (agent, ready) = state.withLock { ($0.agents[podID], $0.ready.contains(podID)) }
        guard let agent else { throw .notFound("pod sandbox \"\(podID)\" not found") }
        guard ready else { throw .failedPrecondition("pod sandbox \(podID) is not ready") }
        return (podID, agent)
    }

    func isReady(_ podID: String) async -> Bool { state.withLock { $0.ready.contains(podID) } }

    func attachDisk(_ podID: String, path: String, serial: String) async throws(CocoonError) {
        _ = state.withLock { $0.disks[podID, default: []].insert(serial) }
    }

    func detachDisk(_ podID: String, serial: String) async throws(CocoonError) {
        _ = state.withLock { $0.disks[podID]?.remove(serial) }
    }

    /// No shared directory: volumes are copied, as for a pod VM without virtio-fs.
    func shareVolumes(_ podID: String, container: String, _ volumes: [VolumeRequest]) async throws(CocoonError)
        -> [SharedMount]?
    { nil }

    func unshareVolumes(_ podID: String, container: String) async {}
}
