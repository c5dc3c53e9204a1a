import CRIAPI
import GRPCCore

// CRI calls not built yet. Each answers UNIMPLEMENTED naming the call, as the CRI contract asks,
// so a kubelet or crictl sees a clear status instead of a fake success. A call moves out of this
// file into its own file when it is built.

extension RuntimeService {
    public func streamPodSandboxes(request: Runtime_V1_StreamPodSandboxesRequest, response: RPCWriter<Runtime_V1_StreamPodSandboxesResponse>, context: ServerContext) async throws {
        throw CRIError.unimplemented("StreamPodSandboxes").rpcError
    }
    public func streamContainers(request: Runtime_V1_StreamContainersRequest, response: RPCWriter<Runtime_V1_StreamContainersResponse>, context: ServerContext) async throws {
        throw CRIError.unimplemented("StreamContainers").rpcError
    }
    public func exec(request: Runtime_V1_ExecRequest, context: ServerContext) async throws -> Runtime_V1_ExecResponse {
        throw CRIError.unimplemented("Exec").rpcError
    }
    public func attach(request: Runtime_V1_AttachRequest, context: ServerContext) async throws -> Runtime_V1_AttachResponse {
        throw CRIError.unimplemented("Attach").rpcError
    }
    public func portForward(request: Runtime_V1_PortForwardRequest, context: ServerContext) async throws -> Runtime_V1_PortForwardResponse {
        throw CRIError.unimplemented("PortForward").rpcError
    }
    public func streamContainerStats(request: Runtime_V1_StreamContainerStatsRequest, response: RPCWriter<Runtime_V1_StreamContainerStatsResponse>, context: ServerContext) async throws {
        throw CRIError.unimplemented("StreamContainerStats").rpcError
    }
    public func streamPodSandboxStats(request: Runtime_V1_StreamPodSandboxStatsRequest, response: RPCWriter<Runtime_V1_StreamPodSandboxStatsResponse>, context: ServerContext) async throws {
        throw CRIError.unimplemented("StreamPodSandboxStats").rpcError
    }
    public func updateRuntimeConfig(request: Runtime_V1_UpdateRuntimeConfigRequest, context: ServerContext) async throws -> Runtime_V1_UpdateRuntimeConfigResponse {
        throw CRIError.unimplemented("UpdateRuntimeConfig").rpcError
    }
    public func checkpointContainer(request: Runtime_V1_CheckpointContainerRequest, context: ServerContext) async throws -> Runtime_V1_CheckpointContainerResponse {
        throw CRIError.unimplemented("CheckpointContainer").rpcError
    }
    public func getContainerEvents(request: Runtime_V1_GetEventsRequest, response: RPCWriter<Runtime_V1_ContainerEventResponse>, context: ServerContext) async throws {
        throw CRIError.unimplemented("GetContainerEvents").rpcError
    }
    public func listMetricDescriptors(request: Runtime_V1_ListMetricDescriptorsRequest, context: ServerContext) async throws -> Runtime_V1_ListMetricDescriptorsResponse {
        throw CRIError.unimplemented("ListMetricDescriptors").rpcError
    }
    public func listPodSandboxMetrics(request: Runtime_V1_ListPodSandboxMetricsRequest, context: ServerContext) async throws -> Runtime_V1_ListPodSandboxMetricsResponse {
        throw CRIError.unimplemented("ListPodSandboxMetrics").rpcError
    }
    public func streamPodSandboxMetrics(request: Runtime_V1_StreamPodSandboxMetricsRequest, response: RPCWriter<Runtime_V1_StreamPodSandboxMetricsResponse>, context: ServerContext) async throws {
        throw CRIError.unimplemented("StreamPodSandboxMetrics").rpcError
    }
    public func updatePodSandboxResources(request: Runtime_V1_UpdatePodSandboxResourcesRequest, context: ServerContext) async throws -> Runtime_V1_UpdatePodSandboxResourcesResponse {
        throw CRIError.unimplemented("UpdatePodSandboxResources").rpcError
    }
}

extension ImageService {
    public func streamImages(request: Runtime_V1_StreamImagesRequest, response: RPCWriter<Runtime_V1_StreamImagesResponse>, context: ServerContext) async throws {
        throw CRIError.unimplemented("StreamImages").rpcError
    }
}
