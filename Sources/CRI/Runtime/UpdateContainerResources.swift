import AgentClient
import CRIAPI
import Errors
import GRPCCore

extension RuntimeService {
    /// New cpu/memory limits for the container's cgroup in the VM, applied at once when it runs.
    public func updateContainerResources(request: Runtime_V1_UpdateContainerResourcesRequest, context: ServerContext)
        async throws -> Runtime_V1_UpdateContainerResourcesResponse
    {
        try await mapErrors {
            guard !request.containerID.isEmpty else { throw CocoonError.invalidArgument("container_id is required") }
            let r = request.linux
            guard r.memoryLimitInBytes >= 0, r.cpuQuota >= -1, r.cpuPeriod >= 0, r.cpuShares >= 0 else {
                throw CocoonError.invalidArgument("linux resources must not be negative")
            }
            let limits = ResourceLimits(
                memoryLimitBytes: r.memoryLimitInBytes, cpuQuotaMicros: r.cpuQuota, cpuPeriodMicros: r.cpuPeriod,
                cpuShares: r.cpuShares)
            try await containers.updateResources(request.containerID, limits)
            return Runtime_V1_UpdateContainerResourcesResponse()
        }
    }
}
