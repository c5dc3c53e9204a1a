import CRIAPI
import Errors
import GRPCCore

extension RuntimeService {
    /// Removes the sandbox's containers, stops the sandbox if needed, then deletes its state and files.
    /// Removing an unknown id succeeds.
    public func removePodSandbox(request: Runtime_V1_RemovePodSandboxRequest, context: ServerContext) async throws
        -> Runtime_V1_RemovePodSandboxResponse
    {
        try await mapErrors {
            guard !request.podSandboxID.isEmpty else { throw CocoonError.invalidArgument("pod_sandbox_id is required") }
            // try?: unknown pod: remove below succeeds (idempotent)
            if let record = try? await sandboxes.status(request.podSandboxID) {
                try await containers.removeAll(inSandbox: record.id)
            }
            try await sandboxes.remove(request.podSandboxID)
            return Runtime_V1_RemovePodSandboxResponse()
        }
    }
}
