import AgentAPI
import AgentService

/// The guest's containers as a dispatcher test drives them: calls recorded, answers scripted.
struct FakeContainerService: ContainerService {
    var calls: [String] = []
    var containers: Set<String> = []
    var nextPid: Int32 = 100
    /// Stdin writes complete at once (the reply comes back with the request) or later.
    var stdinWritesAtOnce = true

    mutating func create(_ r: Cocoon_Agent_V4_CreateContainerRequest) throws(AgentFailure) {
        calls.append("create \(r.id)")
        guard !containers.contains(r.id) else { throw .precondition("container \(r.id) exists") }
        containers.insert(r.id)
    }

    mutating func start(_ id: String) throws(AgentFailure) -> Int32 {
        calls.append("start \(id)")
        guard containers.contains(id) else { throw .notFound("container \(id) not found in the guest") }
        nextPid += 1
        return nextPid
    }

    mutating func exec(_ r: Cocoon_Agent_V4_ExecRequest) throws(AgentFailure) -> Int32 {
        calls.append("exec \(r.containerID) \(r.execID)")
        nextPid += 1
        return nextPid
    }

    mutating func signal(_ r: Cocoon_Agent_V4_SignalRequest) throws(AgentFailure) {
        calls.append("signal \(r.containerID) \(r.signal)")
    }

    func status(_ id: String) throws(AgentFailure) -> Cocoon_Agent_V4_ContainerStatusResponse {
        guard containers.contains(id) else { throw .notFound("container \(id) not found in the guest") }
        var s = Cocoon_Agent_V4_ContainerStatusResponse()
        s.pid = 7
        return s
    }

    mutating func remove(_ id: String) -> [Outgoing] {
        calls.append("remove \(id)")
        containers.remove(id)
        var event = Cocoon_Agent_V4_Event()
        event.exit.containerID = id
        return [.event(event)]
    }

    mutating func updateResources(_ r: Cocoon_Agent_V4_UpdateResourcesRequest) throws(AgentFailure) {
        calls.append("update \(r.id)")
    }

    mutating func unmountDisk(_ serial: String) throws(AgentFailure) { calls.append("unmount \(serial)") }

    mutating func writeStdin(_ r: Cocoon_Agent_V4_WriteStdinRequest, replyTo id: UInt64) throws(AgentFailure)
        -> [DeferredReply]
    {
        calls.append("stdin \(r.containerID) \(r.data.count)")
        return stdinWritesAtOnce ? [DeferredReply(id: id)] : []
    }

    mutating func resize(_ r: Cocoon_Agent_V4_ResizeRequest) throws(AgentFailure) { calls.append("resize") }

    mutating func ackOutput(_ r: Cocoon_Agent_V4_AckOutputRequest) -> [Outgoing] {
        calls.append("ack \(r.bytes)")
        return []
    }
}

/// Forwarded ports: a dial answers at once; a close abandons one pending write.
struct FakePortService: PortService {
    var calls: [String] = []

    mutating func open(_ r: Cocoon_Agent_V4_OpenPortRequest, replyTo id: UInt64) throws(AgentFailure)
        -> [DeferredReply]
    {
        calls.append("open \(r.port)")
        guard r.port != 0 else { throw .invalid("port must be 1-65535") }
        return [DeferredReply(id: id)]
    }

    mutating func write(_ r: Cocoon_Agent_V4_WritePortRequest, replyTo id: UInt64) throws(AgentFailure)
        -> [DeferredReply]
    {
        calls.append("write \(r.connectionID)")
        return []
    }

    mutating func ack(_ r: Cocoon_Agent_V4_AckPortRequest) { calls.append("ack \(r.connectionID)") }

    mutating func close(_ id: UInt64) -> [DeferredReply] {
        calls.append("close \(id)")
        return [DeferredReply(id: 99, failure: .precondition("connection closed"))]
    }
}

/// The pod: health from a fixed uptime, settings recorded; a sysctl it cannot set is refused.
struct FakePodService: PodService {
    var calls: [String] = []

    func health() -> Cocoon_Agent_V4_HealthResponse {
        var h = Cocoon_Agent_V4_HealthResponse()
        h.apiVersion = agentAPIVersion
        h.uptimeNs = 42
        return h
    }

    mutating func configure(_ r: Cocoon_Agent_V4_ConfigurePodRequest) throws(AgentFailure) {
        calls.append("configure \(r.sysctls.count)")
        if r.sysctls.keys.contains("kernel.forbidden") { throw .invalid("sysctl kernel.forbidden is not allowed") }
    }

    mutating func updateResources(_ r: Cocoon_Agent_V4_UpdatePodResourcesRequest) throws(AgentFailure) {
        calls.append("pod resources")
    }
}
