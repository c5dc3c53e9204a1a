import AgentClient
import CRIAPI
import Errors
import GRPCCore

extension RuntimeService {
    /// Applies the pod's new resources to its containers' common cgroup in the guest; memory and CPUs
    /// beyond the VM's boot size are FAILED_PRECONDITION (a VM does not grow here).
    public func updatePodSandboxResources(
        request: Runtime_V1_UpdatePodSandboxResourcesRequest, context: ServerContext
    ) async throws -> Runtime_V1_UpdatePodSandboxResourcesResponse {
        try await mapErrors {
            guard !request.podSandboxID.isEmpty else { throw CocoonError.invalidArgument("pod_sandbox_id is required") }
            guard request.hasResources else { throw CocoonError.invalidArgument("resources is required") }
            let r = request.resources
            for (field, value) in [
                ("memory_limit_in_bytes", r.memoryLimitInBytes), ("cpu_quota", r.cpuQuota), ("cpu_period", r.cpuPeriod),
                ("cpu_shares", r.cpuShares),
            ]
            where value < 0 && !(field == "cpu_quota" && value == -1) {
                throw CocoonError.invalidArgument("resources.\(field) must not be negative (got \(value))")
            }
            let limits = ResourceLimits(
                memoryLimitBytes: r.memoryLimitInBytes, cpuQuotaMicros: max(r.cpuQuota, 0),
                cpuPeriodMicros: r.cpuPeriod,
                cpuShares: r.cpuShares)
            try await sandboxes.updateResources(request.podSandboxID, limits)
            return Runtime_V1_UpdatePodSandboxResourcesResponse()
        }
    }
}
