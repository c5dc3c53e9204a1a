import AgentAPI

/// The pod's containers as the dispatcher drives them (`GuestContainers` in the agent, a fake in
/// the unit tests). Every call is checked there against the containers it knows; a refusal is an
/// `AgentFailure` with the code the host maps to CRI.
public protocol ContainerService {
    mutating func create(_ r: Cocoon_Agent_V4_CreateContainerRequest) throws(AgentFailure)
    /// The container's first process's pid.
    mutating func start(_ id: String) throws(AgentFailure) -> Int32
    /// The exec's pid.
    mutating func exec(_ r: Cocoon_Agent_V4_ExecRequest) throws(AgentFailure) -> Int32
    mutating func signal(_ r: Cocoon_Agent_V4_SignalRequest) throws(AgentFailure)
    func status(_ id: String) throws(AgentFailure) -> Cocoon_Agent_V4_ContainerStatusResponse
    /// Removes what is left of the container; the events its end raised (sent after the reply).
    mutating func remove(_ id: String) -> [Outgoing]
    mutating func updateResources(_ r: Cocoon_Agent_V4_UpdateResourcesRequest) throws(AgentFailure)
    mutating func unmountDisk(_ serial: String) throws(AgentFailure)
    /// Queues stdin bytes; the request's reply is among those returned once they are all written.
    mutating func writeStdin(_ r: Cocoon_Agent_V4_WriteStdinRequest, replyTo id: UInt64) throws(AgentFailure)
        -> [DeferredReply]
    mutating func resize(_ r: Cocoon_Agent_V4_ResizeRequest) throws(AgentFailure)
    /// The host delivered output: what may be sent now.
    mutating func ackOutput(_ r: Cocoon_Agent_V4_AckOutputRequest) -> [Outgoing]
}

/// Connections forwarded to the pod's ports (`GuestPorts` in the agent).
public protocol PortService {
    /// Dials; the request is answered among the returned replies, or later when the dial completes.
    mutating func open(_ r: Cocoon_Agent_V4_OpenPortRequest, replyTo id: UInt64) throws(AgentFailure)
        -> [DeferredReply]
    mutating func write(_ r: Cocoon_Agent_V4_WritePortRequest, replyTo id: UInt64) throws(AgentFailure)
        -> [DeferredReply]
    mutating func ack(_ r: Cocoon_Agent_V4_AckPortRequest)
    /// Closes a connection; the replies of the writes it abandons.
    mutating func close(_ id: UInt64) -> [DeferredReply]
}

/// The pod itself: its settings, network and identity, and the guest's health (`GuestPod`).
public protocol PodService {
    func health() -> Cocoon_Agent_V4_HealthResponse
    mutating func configure(_ r: Cocoon_Agent_V4_ConfigurePodRequest) throws(AgentFailure)
    mutating func updateResources(_ r: Cocoon_Agent_V4_UpdatePodResourcesRequest) throws(AgentFailure)
}
