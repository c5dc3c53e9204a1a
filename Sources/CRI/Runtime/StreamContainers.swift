import CRIAPI
import GRPCCore

extension RuntimeService {
    /// ListContainers, sent in pages.
    public func streamContainers(
        request: Runtime_V1_StreamContainersRequest, response: RPCWriter<Runtime_V1_StreamContainersResponse>,
        context: ServerContext
    ) async throws {
        let list = try await listContainers(
            request: .with { if request.hasFilter { $0.filter = request.filter } }, context: context)
        try await StreamPages.send(list.containers, to: response) { page in .with { $0.containers = page } }
    }
}
