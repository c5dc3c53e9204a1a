import CRIAPI
import GRPCCore

extension ImageService {
    /// Pulls from the registry (verified, stored, unpacked) and answers the image id.
    public func pullImage(request: Runtime_V1_PullImageRequest, context: ServerContext) async throws
        -> Runtime_V1_PullImageResponse
    {
        try await mapErrors {
            let name = try Self.imageName(request.image, hasSpec: request.hasImage, field: "image")
            let credentials = try request.auth.credentials()
            let record = try await images.pull(name, credentials: credentials)
            var response = Runtime_V1_PullImageResponse()
            response.imageRef = record.idString
            return response
        }
    }
}
