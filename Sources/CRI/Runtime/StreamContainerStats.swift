import CRIAPI
import GRPCCore

extension RuntimeService {
    /// ListContainerStats, sent in pages.
    public func streamContainerStats(
        request: Runtime_V1_StreamContainerStatsRequest, response: RPCWriter<Runtime_V1_StreamContainerStatsResponse>,
        context: ServerContext
    ) async throws {
        let list = try await listContainerStats(
            request: .with { if request.hasFilter { $0.filter = request.filter } }, context: context)
        try await StreamPages.send(list.stats, to: response) { page in .with { $0.containerStats = page } }
    }
}
