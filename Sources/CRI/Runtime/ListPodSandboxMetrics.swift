import CRIAPI
import GRPCCore

extension RuntimeService {
    /// Per READY pod, its running containers' cAdvisor metrics from their cgroups in the guest.
    public func listPodSandboxMetrics(
        request: Runtime_V1_ListPodSandboxMetricsRequest, context: ServerContext
    ) async throws -> Runtime_V1_ListPodSandboxMetricsResponse {
        let metrics = try await podMetrics()
        return .with { $0.podMetrics = metrics }
    }
}
