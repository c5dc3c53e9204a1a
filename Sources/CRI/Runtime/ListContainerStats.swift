import CRIAPI
import GRPCCore

extension RuntimeService {
    /// Stats of every container matching the filter (id, pod, labels).
    public func listContainerStats(request: Runtime_V1_ListContainerStatsRequest, context: ServerContext) async throws
        -> Runtime_V1_ListContainerStatsResponse
    {
        try await mapErrors {
            var response = Runtime_V1_ListContainerStatsResponse()
            // The stats filter is ListContainers' filter without a state.
            let filter = Runtime_V1_ContainerFilter.with {
                $0.id = request.filter.id
                $0.podSandboxID = request.filter.podSandboxID
                $0.labelSelector = request.filter.labelSelector
            }
            let matching = try await containers.list().filter { ContainerTranslation.matches($0, filter) }
            // Every guest asked at once; a late one answers from its last sample.
            response.stats = await containers.usage(of: matching).map(StatsTranslation.container)
            return response
        }
    }
}
