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
        guard let stats = try await podStats([sandbox]).first else {
            throw .internalError("no stats made for pod \(sandbox.id)")
        }
        return stats
    }

    /// Stats of several pods, every guest asked at once (a late one answers from its last sample).
    func podStats(_ sandboxes: [SandboxRecord]) async throws(CocoonError) -> [Runtime_V1_PodSandboxStats] {
        let ids = Set(sandboxes.map(\.id))
        let samples = await containers.usage(of: try await containers.list().filter { ids.contains($0.sandboxID) })
        return sandboxes.map { sandbox in
            let own = samples.filter { $0.record.sandboxID == sandbox.id }
            return StatsTranslation.pod(
                sandbox, own.map(StatsTranslation.container), processes: own.reduce(0) { $0 + $1.usage.pids })
        }
    }
}
