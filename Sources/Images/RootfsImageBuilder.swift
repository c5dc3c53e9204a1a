import Errors
import Foundation
import Glibc
import Spawn

/// Turns an unpacked image root filesystem into the read-only block image a pod VM attaches
/// (virtio-blk) as a container's lower layer: EROFS, uncompressed. Chosen by measurement under
/// TCG (see the images issue note): bulk reads ~25% faster than ext4, no size to guess up front,
/// compact and read-only by design; owners, modes, devices, hard links and xattrs are kept.
public enum RootfsImageBuilder {
    public static let tool = "/usr/bin/mkfs.erofs"

    /// Builds on a dispatch thread: mkfs runs for a while and must not hold a Swift concurrency
    /// thread (those also carry gRPC responses).
    public static func buildOffPool(directory: String, image: String) async throws(CocoonError) {
        try await OffPool.run { () throws(CocoonError) in try build(directory: directory, image: image) }
    }

    /// Builds `image` from `directory` (written beside it, then renamed into place).
    public static func build(directory: String, image: String) throws(CocoonError) {
        guard access(tool, X_OK) == 0 else {
            throw .internalError("\(tool) is missing: install erofs-utils (scripts/setup-host does)")
        }
        let tmp = image + ".tmp"
        unlink(tmp)
        let result: HostProcess.Result
        do {
            result = try HostProcess.runBlocking([tool, "--quiet", "-T0", tmp, directory], timeout: .seconds(1800))
        } catch {
            throw .internalError("cannot run \(tool): \(error)")
        }
        guard result.status == 0, rename(tmp, image) == 0 else {
            unlink(tmp)
            throw .internalError("\(tool) failed (\(result.status)) for \(directory): \(result.output.prefix(2000))")
        }
    }
}
