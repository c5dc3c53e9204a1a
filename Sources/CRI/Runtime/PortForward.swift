import CRIAPI
import Errors
import GRPCCore
import Streaming

extension RuntimeService {
    /// Checks a port-forward (the pod is READY, ports in range) and returns the single-use URL where
    /// the client forwards connections into the pod's network namespace.
    public func portForward(request: Runtime_V1_PortForwardRequest, context: ServerContext) async throws
        -> Runtime_V1_PortForwardResponse
    {
        try await mapErrors {
            guard !request.podSandboxID.isEmpty else {
                throw CocoonError.invalidArgument("pod_sandbox_id is required")
            }
            var ports: [UInt16] = []
            for port in request.port {
                guard port > 0, port <= 65535 else {
                    throw CocoonError.invalidArgument("port \(port) is out of range (1-65535)")
                }
                ports.append(UInt16(port))
            }
            let server = try streamingServer()
            let podID = try await sandboxes.readyPodID(request.podSandboxID)
            var response = Runtime_V1_PortForwardResponse()
            response.url = try server.url(for: .portForward(podID: podID, ports: ports))
            return response
        }
    }
}
