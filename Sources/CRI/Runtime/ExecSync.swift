import CRIAPI
import Errors
import Foundation
import GRPCCore

extension RuntimeService {
    /// Runs a command in the container and returns its output and exit code; `timeout` seconds
    /// (0: none) end it with DEADLINE_EXCEEDED after killing it.
    public func execSync(request: Runtime_V1_ExecSyncRequest, context: ServerContext) async throws
        -> Runtime_V1_ExecSyncResponse
    {
        try await mapErrors {
            guard !request.containerID.isEmpty else { throw CocoonError.invalidArgument("container_id is required") }
            guard request.timeout >= 0 else { throw CocoonError.invalidArgument("timeout must not be negative") }
            let result = try await containers.execSync(
                request.containerID, command: request.cmd, timeout: .seconds(request.timeout))
            var response = Runtime_V1_ExecSyncResponse()
            response.stdout = Data(result.stdout)
            response.stderr = Data(result.stderr)
            response.exitCode = result.exitCode
            return response
        }
    }
}
