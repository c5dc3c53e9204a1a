import CRIAPI
import Containers
import GRPCCore
import Sandboxes

extension RuntimeService {
    public func listPodSandbox(request: Runtime_V1_ListPodSandboxRequest, context: ServerContext) async throws
        -> Runtime_V1_ListPodSandboxResponse
    {
        try await mapErrors {
            let records = await sandboxes.list(SandboxTranslation.filter(request))
            var response = Runtime_V1_ListPodSandboxResponse()
            response.items = records.map(SandboxTranslation.pod)
            return response
        }
    }
}
