import CRI
import CocoonAPI
import GRPCCore
import Images

/// Serves `cocoon.v1.Images/Import` (see `ImageImportAPI`): not a CRI call, Cocoon's extension for
/// loading image archives on air-gapped nodes. Errors map like every CRI call's.
public struct ImageImportService: RegistrableRPCService {
    let images: ImageManager

    public init(images: ImageManager) {
        self.images = images
    }

    public func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
        let images = self.images
        router.registerHandler(
            forMethod: ImageImportAPI.method,
            deserializer: JSONMessageCoder<ImageImportAPI.Request>(),
            serializer: JSONMessageCoder<ImageImportAPI.Response>()
        ) { request, _ in
            let single = try await ServerRequest(stream: request)
            let response = try await mapErrors {
                let imported = try await images.importImage(path: single.message.path, name: single.message.name)
                return ImageImportAPI.Response(
                    images: imported.map { .init(id: $0.idString, names: $0.repoTags + $0.repoDigests) })
            }
            return StreamingServerResponse(single: ServerResponse(message: response))
        }
    }
}
