import CRIAPI
import Containers
import Errors
import GRPCCore
import Sandboxes

extension RuntimeService {
    /// The pod's usage: the sum of its containers' cgroups in the VM, with each container's stats.
    public func podSandboxStats(request: Runtime_V1_PodSandboxStatsRequest, context: ServerContext) async throws
        -> Runtime_V1_PodSandboxStatsResponse
    {
        try await mapErrors {
            guard !request.podSandboxID.isEmpty else { throw CocoonError.invalidArgument("pod_sandbox_id is required") }
            let sandbox = try await sandboxes.status(request.podSandboxID)
            var response = Runtime_V1_PodSandboxStatsResponse()
            response.stats = try await podStats(sandbox)
            return response
        }
    }

    func podStats(_ sandbox: SandboxRecord) async throws(CocoonError) -> Runtime_V1_PodSandboxStats {
        var stats: [Runtime_V1_ContainerStats] = []
        var processes: UInt64 = 0
        for record in try await containers.list(inSandbox: sandbox.id) {
            // removed meanwhile: not in the stats
            guard let (r, usage) = try? await containers.stats(record.id) else { continue }
            processes += usage.pids
            stats.append(StatsTranslation.container(r, usage))
        }
        return StatsTranslation.pod(sandbox, stats, processes: processes)
    }
}
