import CRIAPI
import GRPCCore
import Sandboxes

extension RuntimeService {
    public func listPodSandboxStats(request: Runtime_V1_ListPodSandboxStatsRequest, context: ServerContext) async throws -> Runtime_V1_ListPodSandboxStatsResponse {
        try await mapErrors {
            var response = Runtime_V1_ListPodSandboxStatsResponse()
            for sandbox in await sandboxes.list(SandboxFilter()) {
                let f = request.filter
                if !f.id.isEmpty && !sandbox.id.hasPrefix(f.id) { continue }
                if f.labelSelector.contains(where: { sandbox.labels[$0.key] != $0.value }) { continue }
                response.stats.append(await podStats(sandbox))
            }
            return response
        }
    }
}
