import CRIAPI
import GRPCCore

extension RuntimeService {
    /// The metrics ListPodSandboxMetrics reports (`MetricsTranslation`).
    public func listMetricDescriptors(
        request: Runtime_V1_ListMetricDescriptorsRequest, context: ServerContext
    ) async throws -> Runtime_V1_ListMetricDescriptorsResponse {
        .with { $0.descriptors = MetricsTranslation.descriptors }
    }
}
