import CRIAPI
import GRPCCore

extension ImageService {
    /// Every stored image, or those matching `filter.image` (a tag, digest reference or id).
    public func listImages(request: Runtime_V1_ListImagesRequest, context: ServerContext) async throws
        -> Runtime_V1_ListImagesResponse
    {
        try await mapErrors {
            var response = Runtime_V1_ListImagesResponse()
            let wanted = request.filter.image.image.trimmingCharacters(in: .whitespaces)
            if request.hasFilter && !wanted.isEmpty {
                response.images = await images.find(wanted).map { [$0.cri] } ?? []
            } else {
                response.images = await images.list().map(\.cri)
            }
            return response
        }
    }
}
