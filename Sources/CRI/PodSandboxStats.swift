import CRIAPI
import GRPCCore
import Sandboxes

extension RuntimeService {
    /// The pod's usage: the sum of its containers' cgroups in the VM, with each container's stats.
    public func podSandboxStats(request: Runtime_V1_PodSandboxStatsRequest, context: ServerContext) async throws -> Runtime_V1_PodSandboxStatsResponse {
        try await mapErrors {
            guard !request.podSandboxID.isEmpty else { throw CRIError.invalidArgument("pod_sandbox_id is required") }
            let sandbox = try await sandboxes.status(request.podSandboxID)
            var response = Runtime_V1_PodSandboxStatsResponse()
            response.stats = await podStats(sandbox)
            return response
        }
    }

    func podStats(_ sandbox: SandboxRecord) async -> Runtime_V1_PodSandboxStats {
        var stats: [Runtime_V1_ContainerStats] = []
        var processes: UInt64 = 0
        for record in await containers.list() where record.sandboxID == sandbox.id {
            guard let (r, usage) = try? await containers.stats(record.id) else { continue }
            processes += usage.pids
            stats.append(StatsTranslation.container(r, usage))
        }
        return StatsTranslation.pod(sandbox, stats, processes: processes)
    }
}
