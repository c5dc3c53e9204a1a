import CRIAPI
import GRPCCore

extension RuntimeService {
    public func version(request: Runtime_V1_VersionRequest, context: ServerContext) async throws
        -> Runtime_V1_VersionResponse
    {
        var response = Runtime_V1_VersionResponse()
        response.version = "0.1.0"  // the kubelet API version, as containerd answers
        response.runtimeName = Self.runtimeName
        response.runtimeVersion = Self.runtimeVersion
        response.runtimeApiVersion = Self.runtimeAPIVersion
        return response
    }
}
