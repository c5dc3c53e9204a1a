import AgentClient
import Errors
import Volumes

/// What the container manager needs of the pods, and nothing more: each READY pod's agent, whether a
/// pod is still READY, its image disks, and its agents' events. `SandboxManager` provides it in the
/// daemon; unit tests provide a fake.
public protocol PodAgents: Sendable {
    /// The full id and the agent of a READY pod (NOT_FOUND, FAILED_PRECONDITION or UNAVAILABLE otherwise).
    func readyAgent(_ podID: String) async throws(CocoonError) -> (id: String, agent: any GuestAgent)
    /// True while the pod is READY; a running container of a pod that is not has ended with it.
    func isReady(_ podID: String) async -> Bool
    /// Hot-plugs a read-only image disk into a READY pod's VM once; later calls are no-ops.
    func attachDisk(_ podID: String, path: String, serial: String) async throws(CocoonError)
    /// Unmounts (in the guest) and unplugs an image disk no container uses any more.
    func detachDisk(_ podID: String, serial: String) async throws(CocoonError)
    /// Binds a container's volumes into its READY pod's shared directory and says how the guest
    /// mounts them; nil when the pod's VM has no shared directory (its volumes are copied in).
    func shareVolumes(_ podID: String, container: String, _ volumes: [VolumeRequest]) async throws(CocoonError)
        -> [SharedMount]?
    /// Unbinds a container's volumes (none bound: nothing happens).
    func unshareVolumes(_ podID: String, container: String) async
    /// Every agent's events tagged with the pod they came from, in arrival order, until the pods'
    /// owner ends the stream (daemon shutdown). One reader: the container manager.
    var agentEvents: AsyncStream<PodAgentEvent> { get }
    /// What the pod's VM is doing while its agent does not answer; nil where nothing can be told.
    func stallReport(_ podID: String) async -> String?
    /// True when the pod's agent runs on the node (a native pod) and writes its containers' CRI
    /// logs itself, so that none is lost while the daemon is away (as a containerd shim does).
    func agentWritesLogs(_ podID: String) async -> Bool
}

extension PodAgents {
    public func stallReport(_ podID: String) async -> String? { nil }
    public func agentWritesLogs(_ podID: String) async -> Bool { false }
}

/// One agent event and the pod whose agent sent it.
public struct PodAgentEvent: Sendable, Equatable {
    public var podID: String
    public var event: AgentEvent
    /// The pod's channel's credit, released once the event is handled (nil: none kept).
    public var credit: EventCredit?
    public init(podID: String, event: AgentEvent, credit: EventCredit? = nil) {
        self.podID = podID
        self.event = event
        self.credit = credit
    }

    public static func == (a: PodAgentEvent, b: PodAgentEvent) -> Bool { a.podID == b.podID && a.event == b.event }

    /// The event is handled: its channel may read that much more.
    public func handled() { credit?.release(EventCredit.cost(event)) }
}
