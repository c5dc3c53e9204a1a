import Errors
import Foundation
import Glibc
import Logging

/// The EROFS image of each unpacked root filesystem, built once per image after its pull, that
/// pod VMs get hot-plugged as a read-only disk.
extension ImageManager {
    /// The image's EROFS block image (what a pod VM attaches), waiting for its build if it is still
    /// running. Built right after the pull, off the PullImage path.
    public func blockImage(for id: Digest) async throws(CocoonError) -> String {
        let record = try await checkedRecord(id)
        if FileManager.default.fileExists(atPath: record.rootfsImage) { return record.rootfsImage }
        ensureBlockImage(id)
        guard let task = blockBuilds[id] else { throw .internalError("no block image build for \(id)") }
        do { return try await task.value } catch let e as CocoonError { throw e } catch {
            throw .internalError("block image of \(id): \(error)")
        }
    }

    /// Starts building the block images that are missing (after a restart, say).
    public func resumeBlockImages() {
        for (id, r) in records where r.chainID != nil && !FileManager.default.fileExists(atPath: r.rootfsImage) {
            ensureBlockImage(id)
        }
    }

    /// Starts the block-image build of an image unless it exists or is running. The task is owned
    /// here (`blockBuilds`): awaited by `blockImage(for:)` and `remove`, cancelled by `shutdown`.
    func ensureBlockImage(_ id: Digest) {
        guard let record = records[id], blockBuilds[id] == nil,
            !FileManager.default.fileExists(atPath: record.rootfsImage)
        else { return }
        let tmp = root + "/tmp/\(id.hex).\(UInt32.random(in: 0...UInt32.max)).erofs"
        let directory = record.rootfs
        blockBuilds[id] = Task {
            let started = ContinuousClock.now
            do {
                try await RootfsImageBuilder.buildOffPool(directory: directory, image: tmp)
            } catch {
                unlink(tmp)
                // try?: the build error below is the one to report
                _ = try? self.finishBlockImage(id, tmp: nil, seconds: 0)
                self.logger.error("building the block image failed", metadata: ["id": "\(id)", "error": "\(error)"])
                throw error
            }
            return try self.finishBlockImage(id, tmp: tmp, seconds: Self.seconds(since: started))
        }
    }

    /// Moves a built block image into place, unless its image was removed meanwhile.
    @discardableResult
    func finishBlockImage(_ id: Digest, tmp: String?, seconds: Double) throws(CocoonError) -> String {
        blockBuilds[id] = nil
        guard let tmp else { return "" }
        guard var record = records[id] else {
            unlink(tmp)
            throw .notFound("image \(id) was removed while its block image was built")
        }
        // World-readable inside the daemon's 0700 image store, as it always was: a libvirt VM's QEMU
        // opens it through a link in its own directory (whatever umask mkfs ran under).
        guard chmod(tmp, 0o644) == 0, rename(tmp, record.rootfsImage) == 0 else {
            unlink(tmp)
            throw .internalError("cannot place \(record.rootfsImage): \(String(cString: strerror(errno)))")
        }
        record.blockImageSeconds = seconds
        try save(record)
        logger.info("block image ready", metadata: ["id": "\(id)", "seconds": "\(seconds)"])
        return record.rootfsImage
    }
}
