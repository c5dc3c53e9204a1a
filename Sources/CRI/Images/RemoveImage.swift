import CRIAPI
import GRPCCore

extension ImageService {
    /// Removes by tag (only that tag while others remain), digest or id; idempotent. The root
    /// filesystem of a removed image stays while a container made from it exists.
    public func removeImage(request: Runtime_V1_RemoveImageRequest, context: ServerContext) async throws
        -> Runtime_V1_RemoveImageResponse
    {
        try await mapErrors {
            let name = try Self.imageName(request.image, hasSpec: request.hasImage, field: "image")
            await images.setTreesInUse(await treesInUse())
            try await images.remove(name)
            return Runtime_V1_RemoveImageResponse()
        }
    }
}
