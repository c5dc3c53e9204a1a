import CRIAPI
import Errors
import GRPCCore

extension RuntimeService {
    /// Starts the container's process in the pod VM.
    public func startContainer(request: Runtime_V1_StartContainerRequest, context: ServerContext) async throws
        -> Runtime_V1_StartContainerResponse
    {
        try await mapErrors {
            guard !request.containerID.isEmpty else { throw CocoonError.invalidArgument("container_id is required") }
            try await containers.start(request.containerID)
            return Runtime_V1_StartContainerResponse()
        }
    }
}
