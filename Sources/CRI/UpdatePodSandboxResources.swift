import CRIAPI
import GRPCCore

extension RuntimeService {
    /// Applies the pod's new resources to its containers' common cgroup in the guest; memory and CPUs
    /// beyond the VM's boot size are FAILED_PRECONDITION (a VM does not grow here).
    public func updatePodSandboxResources(
        request: Runtime_V1_UpdatePodSandboxResourcesRequest, context: ServerContext
    ) async throws -> Runtime_V1_UpdatePodSandboxResourcesResponse {
        try await mapErrors {
            guard !request.podSandboxID.isEmpty else { throw CRIError.invalidArgument("pod_sandbox_id is required") }
            guard request.hasResources else { throw CRIError.invalidArgument("resources is required") }
            let r = request.resources
            for (field, value) in [("memory_limit_in_bytes", r.memoryLimitInBytes), ("cpu_quota", r.cpuQuota), ("cpu_period", r.cpuPeriod), ("cpu_shares", r.cpuShares)]
            where value < 0 && !(field == "cpu_quota" && value == -1) {
                throw CRIError.invalidArgument("resources.\(field) must not be negative (got \(value))")
            }
            try await sandboxes.updateResources(request.podSandboxID, .with {
                $0.memoryLimitBytes = r.memoryLimitInBytes
                $0.cpuQuotaMicros = max(r.cpuQuota, 0)
                $0.cpuPeriodMicros = r.cpuPeriod
                $0.cpuShares = r.cpuShares
            })
            return Runtime_V1_UpdatePodSandboxResourcesResponse()
        }
    }
}
