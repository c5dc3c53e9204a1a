import Config
import Errors
import Foundation
import Glibc
import Logging
import Models
import Persistence
import Synchronization

/// Removing images: by tag, digest or id; pins; shared trees kept while another image uses them.
extension ImageManager {
    /// Removes by tag (only that tag while others remain), by digest reference or by id (the whole
    /// image). Removing an image that is not there succeeds (idempotent).
    public func remove(_ text: String) async throws(CocoonError) {
        guard var record = find(text) else { return }
        let t = text.trimmingSpaces
        // try?: not a tag reference: remove the whole image
        if let ref = try? ImageReference(parsing: t), ref.tag != nil, record.repoTags.contains(ref.description),
            !(t.hasPrefix("sha256:") || (t.count == 64 && t.allSatisfy(\.isHexDigit)))
        {
            record.repoTags.removeAll { $0 == ref.description }
            if !record.repoTags.isEmpty {
                try save(record)
                return
            }
        }
        // A block image still being built reads the tree about to go: let it finish first.
        // try?: only its end matters; it is discarded
        if let build = blockBuilds[record.id] { _ = try? await build.value }
        try delete(record.id)
    }

    /// The root filesystems the node's containers use now: those of removed images that no
    /// container uses any more are deleted.
    public func setTreesInUse(_ inUse: Set<String>) {
        treesInUse = inUse
        Self.sweepTrees(records: records, inUse: inUse, rootfsDir: root + "/rootfs", logger: logger)
    }

    public func setPinned(_ id: Digest, _ pinned: Bool) throws(CocoonError) {
        guard var r = records[id] else { throw .notFound("image \(id) not found") }
        r.pinned = pinned
        try save(r)
    }

    func delete(_ id: Digest) throws(CocoonError) {
        guard let gone = records[id] else { return }
        try store.delete(id.hex)
        records[id] = nil
        blockBuilds[id]?.cancel()  // its result is discarded by finishBlockImage
        let stillUsed = Set(records.values.flatMap(\.blobs))
        for blob in gone.blobs where !stillUsed.contains(blob) { content.delete(blob) }
        removeTreeUnlessUsed(gone)
        logger.info("image removed", metadata: ["id": "\(id)", "tags": "\(gone.repoTags)"])
    }

    /// Removes a record's unpacked tree and block image unless another record (or `keeping`) uses
    /// them (images with the same layers share one tree), or a container does: then the sweep after
    /// its last container's removal deletes them.
    func removeTreeUnlessUsed(_ record: ImageRecord, by keeping: ImageRecord? = nil) {
        let users = records.values.filter { $0.id != record.id && $0.rootfs == record.rootfs }
        guard users.isEmpty, keeping?.rootfs != record.rootfs else { return }
        if treesInUse.contains(record.rootfsImage) {
            logger.info(
                "image removed; its root filesystem stays while containers use it",
                metadata: ["id": "\(record.id)", "rootfs": "\(record.rootfs)"])
            return
        }
        // try?: a leftover tree is swept at the next start
        try? FileManager.default.removeItem(atPath: record.rootfs)
        unlink(record.rootfsImage)
    }

    func save(_ r: ImageRecord) throws(CocoonError) {
        try store.save(r)
        records[r.id] = r
    }
}
