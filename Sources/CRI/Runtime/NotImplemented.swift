import CRIAPI
import Errors
import GRPCCore

// CRI calls not built yet. Each answers UNIMPLEMENTED naming the call, as the CRI contract asks,
// so a kubelet or crictl sees a clear status instead of a fake success. A call moves out of this
// file into its own file when it is built.

extension RuntimeService {
    public func checkpointContainer(request: Runtime_V1_CheckpointContainerRequest, context: ServerContext) async throws
        -> Runtime_V1_CheckpointContainerResponse
    {
        throw CocoonError.notImplemented("CheckpointContainer").rpcError
    }
}
