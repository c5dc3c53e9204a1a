import CRIAPI
import GRPCCore

extension RuntimeService {
    /// Every filter of ContainerFilter: id and sandbox id (prefixes), state, labels.
    public func listContainers(request: Runtime_V1_ListContainersRequest, context: ServerContext) async throws
        -> Runtime_V1_ListContainersResponse
    {
        try await mapErrors {
            var response = Runtime_V1_ListContainersResponse()
            response.containers = try await containers.list()
                .filter { !request.hasFilter || ContainerTranslation.matches($0, request.filter) }
                .map(ContainerTranslation.container)
            return response
        }
    }
}
