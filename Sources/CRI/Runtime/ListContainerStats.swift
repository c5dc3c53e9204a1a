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
            for record in try await containers.list() where ContainerTranslation.matches(record, filter) {
                // try?: removed meanwhile: not in the list
                guard let (r, usage) = try? await containers.stats(record.id) else { continue }
                response.stats.append(StatsTranslation.container(r, usage))
            }
            return response
        }
    }
}
