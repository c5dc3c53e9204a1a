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
    /// them: images with the same layers share one tree.
    func removeTreeUnlessUsed(_ record: ImageRecord, by keeping: ImageRecord? = nil) {
        let users = records.values.filter { $0.id != record.id && $0.rootfs == record.rootfs }
        guard users.isEmpty, keeping?.rootfs != record.rootfs else { return }
        // try?: a leftover tree is swept at the next start
        try? FileManager.default.removeItem(atPath: record.rootfs)
        unlink(record.rootfsImage)
    }

    func save(_ r: ImageRecord) throws(CocoonError) {
        try store.save(r)
        records[r.id] = r
    }
}
