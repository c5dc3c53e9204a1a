import CRIAPI
import Errors
import GRPCCore

extension RuntimeService {
    /// CPU and memory of the container's cgroup in the pod VM.
    public func containerStats(request: Runtime_V1_ContainerStatsRequest, context: ServerContext) async throws
        -> Runtime_V1_ContainerStatsResponse
    {
        try await mapErrors {
            guard !request.containerID.isEmpty else { throw CocoonError.invalidArgument("container_id is required") }
            var response = Runtime_V1_ContainerStatsResponse()
            response.stats = StatsTranslation.container(try await containers.usage(request.containerID))
            return response
        }
    }
}
