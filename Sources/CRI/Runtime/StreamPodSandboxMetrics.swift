import CRIAPI
import GRPCCore

extension RuntimeService {
    /// ListPodSandboxMetrics, sent in pages.
    public func streamPodSandboxMetrics(
        request: Runtime_V1_StreamPodSandboxMetricsRequest,
        response: RPCWriter<Runtime_V1_StreamPodSandboxMetricsResponse>,
        context: ServerContext
    ) async throws {
        try await StreamPages.send(try await podMetrics(), to: response) { page in .with { $0.podSandboxMetrics = page }
        }
    }
}
