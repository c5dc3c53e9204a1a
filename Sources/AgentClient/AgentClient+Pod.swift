import AgentAPI

/// The pod-wide calls of the agent API, typed.
extension AgentClient {
    /// Applies the pod's sysctls in the guest, before its containers start.
    public func configurePod(sysctls: [String: String], timeout: Duration) async throws(AgentClientError) {
        var request = Cocoon_Agent_V1_Request()
        request.configurePod = .with { $0.sysctls = sysctls }
        _ = try await call(request, name: "ConfigurePod", timeout: timeout)
    }

    /// Limits all of the pod's containers together (CRI UpdatePodSandboxResources).
    public func updatePodResources(_ resources: Cocoon_Agent_V1_Resources, timeout: Duration) async throws(AgentClientError) {
        var request = Cocoon_Agent_V1_Request()
        request.updatePodResources = .with { $0.resources = resources }
        _ = try await call(request, name: "UpdatePodResources", timeout: timeout)
    }
}
