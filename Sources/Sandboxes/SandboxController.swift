import AgentClient
import Errors
import PodNetwork

/// The seam between the CRI layer and one kind of pod sandbox, as containerd's sandbox controller
/// is: the CRI calls (and nothing else) reach sandboxes through it, and containers reach their pods
/// through `PodAgents`. `SandboxManager` (a pod per VM) is today's implementation; a host-namespace
/// kind, or a router that picks a kind per runtime handler, fits here without touching the CRI files.
///
/// The contract every implementation keeps:
/// - Ids: `run` returns a new 64-hex id; every other call takes the full id or a unique prefix
///   (an ambiguous prefix is INVALID_ARGUMENT, an unknown one NOT_FOUND), as containerd does.
/// - `run` is all or nothing: on any failure nothing of the pod is left (no process, network,
///   mount, file or reserved name) and the error names what failed; an unknown runtime handler is
///   NOT_FOUND; a pod name (namespace/name/uid/attempt) still held by another sandbox is
///   ALREADY_EXISTS. On success the pod is READY and can run containers.
/// - `stop` ends everything the pod runs and releases its network; a stopped pod stays listed,
///   NOTREADY. `remove` also deletes its state. Both succeed for an unknown id (idempotent, as the
///   kubelet expects) and may be repeated after a partial failure.
/// - `status` and `list` answer from state the implementation holds, never by asking a pod (a pod
///   that does not answer must not slow them); `list` filters by id prefix, state and labels.
/// - State is persisted before `run` returns and after every change; `recover` (once, at start-up,
///   before any call) finds the pods of a previous daemon again: running ones stay READY, dead ones
///   are NOTREADY, half-created ones are removed.
/// - Every call may run concurrently with every other; calls for the same pod are serialized.
public protocol SandboxController: Sendable {
    func recover() async
    func run(_ request: RunRequest) async throws(CocoonError) -> String
    func stop(_ idOrPrefix: String) async throws(CocoonError)
    func remove(_ idOrPrefix: String) async throws(CocoonError)
    func status(_ idOrPrefix: String) async throws(CocoonError) -> SandboxRecord
    func list(_ filter: SandboxFilter) async -> [SandboxRecord]
    /// CRI UpdatePodSandboxResources: the pod's limits as a whole (FAILED_PRECONDITION when not READY).
    func updateResources(_ idOrPrefix: String, _ resources: ResourceLimits) async throws(CocoonError)
    /// The full id of a READY pod that can run processes now (port-forward); NOT_FOUND or
    /// FAILED_PRECONDITION otherwise.
    func readyPodID(_ idOrPrefix: String) async throws(CocoonError) -> String
}

/// What the CRI's node-wide calls read and set beside the pods: network readiness and the pod CIDR
/// (Status, UpdateRuntimeConfig) and, for verbose Status, the VM templates.
public protocol SandboxNode: Sendable {
    func networkReadiness() async -> NetworkReadiness
    func setPodCIDR(_ cidr: String) async throws(CocoonError)
    func podCIDR() -> String
    func templateStatus() async -> [TemplateStatus]
}

extension SandboxManager: SandboxController, SandboxNode {
    public func readyPodID(_ idOrPrefix: String) async throws(CocoonError) -> String {
        try await readyAgent(idOrPrefix).id
    }
}
