import Errors
import Foundation
import Glibc

/// Records written before layers were checked against their diff ids (they have no chain id): their
/// trees are not trusted. Before a container uses such an image it is unpacked again from the
/// blobs in the content store, every layer checked, and moved under its chain id.
extension ImageManager {
    /// The record of `id`, unpacked again and checked first when it predates the diff-id check.
    func checkedRecord(_ id: Digest) async throws(CocoonError) -> ImageRecord {
        guard let record = records[id] else { throw .notFound("image \(id) not found") }
        if record.chainID != nil { return record }
        let config: ImageConfig
        do {
            config = try DocumentDecoder.decode(
                ImageConfig.self, from: try content.read(id, limit: MediaTypes.maxConfigBytes),
                what: "image \(id) config")
        } catch {
            throw .failedPrecondition("image \(id): its config cannot be read (\(error)); pull the image again")
        }
        let diffIDs = config.rootfs.diff_ids, layers = record.layers
        guard let chain = ChainID.of(diffIDs), diffIDs.count == layers.count else {
            throw .integrity("image \(id): its config lists \(diffIDs.count) layers, its manifest \(layers.count)")
        }
        logger.warning(
            "image unpacked before layers were checked against their diff ids: unpacking it again",
            metadata: ["id": "\(id)", "old_rootfs": "\(record.rootfs)"])
        let source = StoredBlobs(image: id)
        let timing: UnpackTiming
        do {
            timing = try await unpackOnce(layers, chain: chain) {
                try await self.downloadAndUnpack(
                    layers, diffIDs: diffIDs, from: source, key: id.description, chain: chain)
            }
        } catch let e as CocoonError {
            logger.error(
                "image failed its check; remove and pull it again", metadata: ["id": "\(id)", "error": "\(e)"])
            throw e
        } catch {
            throw .internalError("image \(id): unpacking again: \(error)")
        }
        guard var current = records[id] else { throw .notFound("image \(id) was removed while it was checked") }
        if current.chainID != nil { return current }
        let old = current
        current.rootfs = timing.rootfs
        current.chainID = chain
        current.blockImageSeconds = nil
        try save(current)
        removeTreeUnlessUsed(old, by: current)
        return current
    }
}

/// The layers of an image already in the content store (their digests were checked when stored),
/// for unpacking it again without a registry.
struct StoredBlobs: ImageSource {
    let image: Digest

    func manifest(_ tagOrDigest: String) async throws(CocoonError) -> (
        bytes: [UInt8], mediaType: String, digest: Digest
    ) {
        throw .internalError("image \(image): stored blobs have no manifest lookup")
    }

    func fetchBlob(_ d: Descriptor, into store: ContentStore, progress: @Sendable (Int64) -> Void)
        async throws(CocoonError)
    {
        guard store.has(d.digest, size: d.size) else {
            throw .failedPrecondition(
                "image \(image): layer \(d.digest) is missing from the store; pull the image again")
        }
        progress(d.size)
    }
}
