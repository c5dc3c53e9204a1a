import CRIAPI
import Errors
import GRPCCore

extension RuntimeService {
    /// Shuts the pod's VM down (agent first, then the hypervisor). Stopping twice is fine.
    public func stopPodSandbox(request: Runtime_V1_StopPodSandboxRequest, context: ServerContext) async throws
        -> Runtime_V1_StopPodSandboxResponse
    {
        try await mapErrors {
            guard !request.podSandboxID.isEmpty else { throw CocoonError.invalidArgument("pod_sandbox_id is required") }
            try await sandboxes.stop(request.podSandboxID)
            return Runtime_V1_StopPodSandboxResponse()
        }
    }
}
