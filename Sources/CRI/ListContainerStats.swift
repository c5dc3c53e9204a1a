import CRIAPI
import GRPCCore

extension RuntimeService {
    /// Stats of every container matching the filter (id, pod, labels).
    public func listContainerStats(request: Runtime_V1_ListContainerStatsRequest, context: ServerContext) async throws -> Runtime_V1_ListContainerStatsResponse {
        try await mapErrors {
            var response = Runtime_V1_ListContainerStatsResponse()
            for record in await containers.list() {
                let f = request.filter
                if !f.id.isEmpty && !record.id.hasPrefix(f.id) { continue }
                if !f.podSandboxID.isEmpty && !record.sandboxID.hasPrefix(f.podSandboxID) { continue }
                if f.labelSelector.contains(where: { record.labels[$0.key] != $0.value }) { continue }
                guard let (r, usage) = try? await containers.stats(record.id) else { continue }
                response.stats.append(StatsTranslation.container(r, usage))
            }
            return response
        }
    }
}
