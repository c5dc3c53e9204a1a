import CRIAPI
import Errors
import GRPCCore

extension RuntimeService {
    /// Kills the container if it runs, removes it from the VM and forgets it. Unknown ids succeed.
    public func removeContainer(request: Runtime_V1_RemoveContainerRequest, context: ServerContext) async throws
        -> Runtime_V1_RemoveContainerResponse
    {
        try await mapErrors {
            guard !request.containerID.isEmpty else { throw CocoonError.invalidArgument("container_id is required") }
            try await containers.remove(request.containerID)
            return Runtime_V1_RemoveContainerResponse()
        }
    }
}
