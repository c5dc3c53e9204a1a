import CRIAPI
import GRPCCore

extension RuntimeService {
    /// ListPodSandboxStats, sent in pages.
    public func streamPodSandboxStats(
        request: Runtime_V1_StreamPodSandboxStatsRequest, response: RPCWriter<Runtime_V1_StreamPodSandboxStatsResponse>,
        context: ServerContext
    ) async throws {
        let list = try await listPodSandboxStats(
            request: .with { if request.hasFilter { $0.filter = request.filter } }, context: context)
        try await StreamPages.send(list.stats, to: response) { page in .with { $0.podSandboxStats = page } }
    }
}
