import CRIAPI
import GRPCCore

extension RuntimeService {
    /// ListPodSandbox, sent in pages.
    public func streamPodSandboxes(
        request: Runtime_V1_StreamPodSandboxesRequest, response: RPCWriter<Runtime_V1_StreamPodSandboxesResponse>,
        context: ServerContext
    ) async throws {
        let list = try await listPodSandbox(
            request: .with { if request.hasFilter { $0.filter = request.filter } }, context: context)
        try await StreamPages.send(list.items, to: response) { page in .with { $0.podSandboxes = page } }
    }
}
