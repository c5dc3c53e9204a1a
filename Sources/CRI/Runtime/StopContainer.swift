import CRIAPI
import Errors
import GRPCCore

extension RuntimeService {
    /// The image's StopSignal (or SIGTERM), then SIGKILL after `timeout` seconds. Idempotent.
    public func stopContainer(request: Runtime_V1_StopContainerRequest, context: ServerContext) async throws
        -> Runtime_V1_StopContainerResponse
    {
        try await mapErrors {
            guard !request.containerID.isEmpty else { throw CocoonError.invalidArgument("container_id is required") }
            guard request.timeout >= 0 else { throw CocoonError.invalidArgument("timeout must not be negative") }
            try await containers.stop(request.containerID, timeout: .seconds(request.timeout))
            return Runtime_V1_StopContainerResponse()
        }
    }
}
