import AgentAPI

/// The container calls of the agent API, typed.
extension AgentClient {
    public func createContainer(_ r: Cocoon_Agent_V1_CreateContainerRequest, timeout: Duration) async throws(AgentClientError) {
        var request = Cocoon_Agent_V1_Request()
        request.createContainer = r
        _ = try await call(request, name: "CreateContainer", timeout: timeout)
    }

    public func startContainer(_ id: String, timeout: Duration) async throws(AgentClientError) -> Int32 {
        var request = Cocoon_Agent_V1_Request()
        request.startContainer = .with { $0.id = id }
        guard case .startContainer(let r)? = try await call(request, name: "StartContainer", timeout: timeout).result else {
            throw .protocolViolation("StartContainer answered with another result")
        }
        return r.pid
    }

    public func exec(_ r: Cocoon_Agent_V1_ExecRequest, timeout: Duration) async throws(AgentClientError) -> Int32 {
        var request = Cocoon_Agent_V1_Request()
        request.exec = r
        guard case .exec(let reply)? = try await call(request, name: "Exec", timeout: timeout).result else {
            throw .protocolViolation("Exec answered with another result")
        }
        return reply.pid
    }

    public func signal(container: String, exec: String = "", signal: Int32, timeout: Duration) async throws(AgentClientError) {
        var request = Cocoon_Agent_V1_Request()
        request.signal = .with {
            $0.containerID = container
            $0.execID = exec
            $0.signal = signal
        }
        _ = try await call(request, name: "Signal", timeout: timeout)
    }

    public func containerStatus(_ id: String, timeout: Duration) async throws(AgentClientError) -> Cocoon_Agent_V1_ContainerStatusResponse {
        var request = Cocoon_Agent_V1_Request()
        request.containerStatus = .with { $0.id = id }
        guard case .containerStatus(let r)? = try await call(request, name: "ContainerStatus", timeout: timeout).result else {
            throw .protocolViolation("ContainerStatus answered with another result")
        }
        return r
    }

    public func removeContainer(_ id: String, timeout: Duration) async throws(AgentClientError) {
        var request = Cocoon_Agent_V1_Request()
        request.removeContainer = .with { $0.id = id }
        _ = try await call(request, name: "RemoveContainer", timeout: timeout)
    }

    public func updateResources(_ id: String, _ resources: Cocoon_Agent_V1_Resources, timeout: Duration) async throws(AgentClientError) {
        var request = Cocoon_Agent_V1_Request()
        request.updateResources = .with {
            $0.id = id
            $0.resources = resources
        }
        _ = try await call(request, name: "UpdateResources", timeout: timeout)
    }

    public func unmountDisk(_ serial: String, timeout: Duration) async throws(AgentClientError) {
        var request = Cocoon_Agent_V1_Request()
        request.unmountDisk = .with { $0.serial = serial }
        _ = try await call(request, name: "UnmountDisk", timeout: timeout)
    }
}
