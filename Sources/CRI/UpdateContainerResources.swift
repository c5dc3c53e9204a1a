import CRIAPI
import GRPCCore

extension RuntimeService {
    /// New cpu/memory limits for the container's cgroup in the VM, applied at once when it runs.
    public func updateContainerResources(request: Runtime_V1_UpdateContainerResourcesRequest, context: ServerContext) async throws -> Runtime_V1_UpdateContainerResourcesResponse {
        try await mapErrors {
            guard !request.containerID.isEmpty else { throw CRIError.invalidArgument("container_id is required") }
            let r = request.linux
            guard r.memoryLimitInBytes >= 0, r.cpuQuota >= -1, r.cpuPeriod >= 0, r.cpuShares >= 0 else {
                throw CRIError.invalidArgument("linux resources must not be negative")
            }
            try await containers.updateResources(request.containerID, .with {
                $0.memoryLimitBytes = r.memoryLimitInBytes
                $0.cpuQuotaMicros = r.cpuQuota
                $0.cpuPeriodMicros = r.cpuPeriod
                $0.cpuShares = r.cpuShares
            })
            return Runtime_V1_UpdateContainerResourcesResponse()
        }
    }
}
