import CRIAPI
import GRPCCore
import Spawn
import Hypervisor
import Sandboxes

extension RuntimeService {
    public func podSandboxStatus(request: Runtime_V1_PodSandboxStatusRequest, context: ServerContext) async throws -> Runtime_V1_PodSandboxStatusResponse {
        try await mapErrors {
            guard !request.podSandboxID.isEmpty else { throw CRIError.invalidArgument("pod_sandbox_id is required") }
            let record = try await sandboxes.status(request.podSandboxID)
            var response = Runtime_V1_PodSandboxStatusResponse()
            response.status = SandboxTranslation.status(record)
            response.timestamp = HostProcess.nowNs()
            if request.verbose {
                response.info["info"] = SandboxTranslation.verboseInfo(record)
            }
            return response
        }
    }
}
