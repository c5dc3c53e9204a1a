import CRIAPI
import Containers
import Errors
import GRPCCore
import Hypervisor
import Sandboxes
import Spawn

extension RuntimeService {
    public func podSandboxStatus(request: Runtime_V1_PodSandboxStatusRequest, context: ServerContext) async throws
        -> Runtime_V1_PodSandboxStatusResponse
    {
        try await mapErrors {
            guard !request.podSandboxID.isEmpty else { throw CocoonError.invalidArgument("pod_sandbox_id is required") }
            let record = try await sandboxes.status(request.podSandboxID)
            var response = Runtime_V1_PodSandboxStatusResponse()
            response.status = SandboxTranslation.status(record)
            response.timestamp = HostProcess.nowNs()
            if request.verbose {
                response.info["info"] = try SandboxTranslation.verboseInfo(record)
            }
            return response
        }
    }
}
