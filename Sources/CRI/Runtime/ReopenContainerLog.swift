import CRIAPI
import Errors
import GRPCCore

extension RuntimeService {
    /// Reopens the container's log file after the kubelet rotated it.
    public func reopenContainerLog(request: Runtime_V1_ReopenContainerLogRequest, context: ServerContext) async throws
        -> Runtime_V1_ReopenContainerLogResponse
    {
        try await mapErrors {
            guard !request.containerID.isEmpty else { throw CocoonError.invalidArgument("container_id is required") }
            try await containers.reopenLog(request.containerID)
            return Runtime_V1_ReopenContainerLogResponse()
        }
    }
}
