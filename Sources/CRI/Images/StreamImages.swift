import CRIAPI
import GRPCCore

extension ImageService {
    /// ListImages, sent in pages.
    public func streamImages(
        request: Runtime_V1_StreamImagesRequest, response: RPCWriter<Runtime_V1_StreamImagesResponse>,
        context: ServerContext
    ) async throws {
        let list = try await listImages(
            request: .with { if request.hasFilter { $0.filter = request.filter } }, context: context)
        try await StreamPages.send(list.images, to: response) { page in .with { $0.images = page } }
    }
}
