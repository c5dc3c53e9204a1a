import CRIAPI
import Errors
import GRPCCore

// CRI calls not built yet. Each answers UNIMPLEMENTED naming the call, as the CRI contract asks,
// so a kubelet or crictl sees a clear status instead of a fake success. A call moves out of this
// file into its own file when it is built.

extension RuntimeService {
    public func exec(request: Runtime_V1_ExecRequest, context: ServerContext) async throws -> Runtime_V1_ExecResponse {
        throw CocoonError.notImplemented("Exec").rpcError
    }
    public func attach(request: Runtime_V1_AttachRequest, context: ServerContext) async throws
        -> Runtime_V1_AttachResponse
    {
        throw CocoonError.notImplemented("Attach").rpcError
    }
    public func portForward(request: Runtime_V1_PortForwardRequest, context: ServerContext) async throws
        -> Runtime_V1_PortForwardResponse
    {
        throw CocoonError.notImplemented("PortForward").rpcError
    }
    public func updateRuntimeConfig(request: Runtime_V1_UpdateRuntimeConfigRequest, context: ServerContext) async throws
        -> Runtime_V1_UpdateRuntimeConfigResponse
    {
        throw CocoonError.notImplemented("UpdateRuntimeConfig").rpcError
    }
    public func checkpointContainer(request: Runtime_V1_CheckpointContainerRequest, context: ServerContext) async throws
        -> Runtime_V1_CheckpointContainerResponse
    {
        throw CocoonError.notImplemented("CheckpointContainer").rpcError
    }
}
