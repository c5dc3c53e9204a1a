import AgentAPI
import BootContract
import ContainerCore

/// The guest agent of one pod VM, as the sandbox and container managers use it. `AgentClient` is
/// the real one (the agent channel); unit tests use a fake, so the managers' state machines are
/// tested without a VM. Every call has a deadline; a dead guest is an error, never a hang.
public protocol GuestAgent: Sendable {
    func health(timeout: Duration) async throws(AgentClientError) -> GuestHealth
    /// Asks the guest to power off; the VM ends shortly after the reply.
    func shutdown(timeout: Duration) async throws(AgentClientError)
    /// Tells the agent this host is leaving (a daemon restart): it keeps later events for the next session.
    func detach(timeout: Duration) async throws(AgentClientError)
    func close() async

    /// Applies the pod's sysctls in the guest, before its containers start.
    func configurePod(sysctls: [String: String], timeout: Duration) async throws(AgentClientError)
    /// Limits all of the pod's containers together.
    func updatePodResources(_ resources: ResourceLimits, timeout: Duration) async throws(AgentClientError)
    /// Unmounts an image disk in the guest before it is unplugged.
    func unmountDisk(_ serial: String, timeout: Duration) async throws(AgentClientError)

    func createContainer(_ spec: ContainerCreateSpec, timeout: Duration) async throws(AgentClientError)
    /// Starts the container's process; returns its pid in the guest.
    func startContainer(_ id: String, timeout: Duration) async throws(AgentClientError) -> Int32
    /// Starts another process in a running container; returns its pid in the guest.
    func exec(container: String, execID: String, process: ProcessSpec, timeout: Duration) async throws(AgentClientError)
        -> Int32
    /// Signals the container's process, or one exec's (`exec` not empty).
    func signal(container: String, exec: String, signal: Int32, timeout: Duration) async throws(AgentClientError)
    func containerUsage(_ id: String, timeout: Duration) async throws(AgentClientError) -> ContainerUsage
    func updateResources(_ id: String, _ resources: ResourceLimits, timeout: Duration) async throws(AgentClientError)
    func removeContainer(_ id: String, timeout: Duration) async throws(AgentClientError)
}

/// How a sandbox manager opens an agent: the real channel in the daemon, a fake in unit tests.
/// `onEvent` receives the agent's process output and exits in the order they arrive.
public typealias GuestAgentConnector =
    @Sendable (
        _ endpoint: AgentEndpoint, _ timeout: Duration, _ onEvent: (@Sendable (AgentEvent) -> Void)?
    ) async throws(AgentClientError) -> any GuestAgent

/// The agent API version this host speaks; a guest agent answering Health with another is refused.
public let hostAgentAPIVersion: UInt32 = agentAPIVersion
