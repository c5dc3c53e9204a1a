import CRIAPI
import Containers
import GRPCCore
import Sandboxes

extension RuntimeService {
    public func listPodSandboxStats(request: Runtime_V1_ListPodSandboxStatsRequest, context: ServerContext) async throws
        -> Runtime_V1_ListPodSandboxStatsResponse
    {
        try await mapErrors {
            var response = Runtime_V1_ListPodSandboxStatsResponse()
            response.stats = try await podStats(
                await sandboxes.list(SandboxFilter(id: request.filter.id, labels: request.filter.labelSelector)))
            return response
        }
    }
}
