import CRIAPI
import Foundation
import GRPCCore
import Images

extension ImageService {
    /// The image, or no image (not an error) when it is not stored. Verbose adds `info`: the image
    /// config and pull timings, or for an image still being pulled, its live progress
    /// (`pullProgress`, what `cocoonctl pull` draws).
    public func imageStatus(request: Runtime_V1_ImageStatusRequest, context: ServerContext) async throws
        -> Runtime_V1_ImageStatusResponse
    {
        try await mapErrors {
            let name = try Self.imageName(request.image, hasSpec: request.hasImage, field: "image")
            var response = Runtime_V1_ImageStatusResponse()
            guard let record = await images.find(name) else {
                // try?: not a reference: no pull in progress
                if request.verbose, let ref = try? ImageReference(parsing: name),
                    let live = images.progress.snapshot(ref.description)
                {
                    response.info["pullProgress"] = try VerboseJSON.encode(live)
                }
                return response
            }
            response.image = record.cri
            if request.verbose {
                let configDigest = record.id
                let config = try images.content.read(configDigest, limit: MediaTypes.maxConfigBytes)
                response.info["imageConfig"] = String(decoding: config, as: UTF8.self)
                struct Info: Encodable {
                    var manifestDigest: String
                    var layers: [String]
                    var rootfs: String
                    var rootfsImage: String
                    var fetchSeconds: Double
                    var unpackSeconds: Double
                    var blockImageSeconds: Double?
                    var pulledAt: String
                }
                response.info["info"] = try VerboseJSON.encode(
                    Info(
                        manifestDigest: record.manifestDigest.description,
                        layers: record.layers.map(\.digest.description),
                        rootfs: record.rootfs, rootfsImage: record.rootfsImage, fetchSeconds: record.fetchSeconds,
                        unpackSeconds: record.unpackSeconds, blockImageSeconds: record.blockImageSeconds,
                        pulledAt: record.pulledAt.ISO8601Format()))
            }
            return response
        }
    }
}
