import CRIAPI
import Foundation
import GRPCCore

extension ImageService {
    /// Bytes and inodes used by the image store, for the kubelet's image garbage collection.
    public func imageFsInfo(request: Runtime_V1_ImageFsInfoRequest, context: ServerContext) async throws
        -> Runtime_V1_ImageFsInfoResponse
    {
        try await mapErrors {
            let usage = images.usage()
            var fs = Runtime_V1_FilesystemUsage()
            fs.timestamp = Int64(Date().timeIntervalSince1970 * 1e9)
            fs.fsID.mountpoint = images.root
            fs.usedBytes.value = usage.bytes
            fs.inodesUsed.value = usage.inodes
            var response = Runtime_V1_ImageFsInfoResponse()
            response.imageFilesystems = [fs]
            return response
        }
    }
}
