import Crypto
import Errors
import Foundation
import Glibc
import NIOCore

/// Owns the blobs of every image under `<root>/blobs/sha256/<hex>`, shared between images so no
/// blob is stored twice. A blob only appears under its digest once its bytes were verified
/// against it: writers stream into `<root>/ingest/` and rename into place (atomic), so a failed
/// or tampered download leaves nothing behind.
public final class ContentStore: Sendable {
    public let root: String
    /// The free space a download must leave (checked before it starts, against the size its
    /// descriptor declares, and every 16 MiB it writes).
    public let reserveFreeBytes: Int64
    var blobDir: String { root + "/blobs/sha256" }
    var ingestDir: String { root + "/ingest" }

    public init(root: String, reserveFreeBytes: Int64 = 512 << 20) throws(CocoonError) {
        self.root = root
        self.reserveFreeBytes = reserveFreeBytes
        for dir in [root + "/blobs/sha256", root + "/ingest"] {
            do { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) } catch {
                throw .internalError("cannot create \(dir): \(error)")
            }
        }
        // Leftovers of an interrupted download are never valid blobs.
        // try?: no ingest dir yet: nothing stale
        if let stale = try? FileManager.default.contentsOfDirectory(atPath: ingestDir) {
            for f in stale { unlink(ingestDir + "/" + f) }
        }
    }

    public func path(_ d: Digest) -> String { blobDir + "/" + d.hex }

    /// True when the blob is stored with the expected size.
    public func has(_ d: Digest, size: Int64? = nil) -> Bool {
        var st = stat()
        guard stat(path(d), &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return false }
        return size.map { Int64(st.st_size) == $0 } ?? true
    }

    public func size(_ d: Digest) -> Int64? {
        var st = stat()
        guard stat(path(d), &st) == 0 else { return nil }
        return Int64(st.st_size)
    }

    /// Reads a small stored blob (manifest, config), capped at `limit` bytes.
    public func read(_ d: Digest, limit: Int) throws(CocoonError) -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path(d)) else {
            throw .notFound("blob \(d) is not in the content store")
        }
        guard data.count <= limit else { throw .integrity("blob \(d) is larger than \(limit) bytes") }
        return [UInt8](data)
    }

    /// Stores bytes already in memory, verifying them against `digest`.
    public func put(_ bytes: [UInt8], digest: Digest) throws(CocoonError) {
        if has(digest, size: Int64(bytes.count)) { return }
        let w = try writer(digest: digest, expectedSize: Int64(bytes.count))
        do throws(CocoonError) {
            try w.append(bytes)
            try w.commit()
        } catch {
            w.abort()
            throw error
        }
    }

    /// A writer that streams one blob into the ingest area; `commit` verifies and publishes it.
    public func writer(digest: Digest, expectedSize: Int64?) throws(CocoonError) -> BlobWriter {
        try FreeSpace.check(
            ingestDir, adding: expectedSize ?? 0, reserve: reserveFreeBytes,
            what: "blob \(digest) (\((expectedSize ?? 0) >> 20) MiB)")
        let tmp = ingestDir + "/\(digest.hex).\(UInt64.random(in: 0...UInt64.max))"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .internalError("cannot create \(tmp): \(String(cString: strerror(errno)))") }
        return BlobWriter(
            fd: fd, tmpPath: tmp, finalPath: path(digest), digest: digest, expectedSize: expectedSize,
            reserveFreeBytes: reserveFreeBytes)
    }

    public func delete(_ d: Digest) {
        unlink(path(d))
    }

    /// Every stored blob's digest.
    public func all() -> [Digest] {
        // try?: no blob dir yet: no blobs
        let names = (try? FileManager.default.contentsOfDirectory(atPath: blobDir)) ?? []
        // try?: stray files are not blobs
        return names.compactMap { try? Digest(parsing: "sha256:" + $0) }
    }
}

/// Streams one blob to a temporary file, hashing as it goes. Never shared between tasks.
public final class BlobWriter {
    private let fd: Int32
    private let tmpPath: String
    private let finalPath: String
    private let digest: Digest
    private let expectedSize: Int64?
    private let reserveFreeBytes: Int64
    /// Written since the last free-space check.
    private var unchecked: Int64 = 0
    private var hasher = SHA256()
    public private(set) var written: Int64 = 0
    private var closed = false

    init(fd: Int32, tmpPath: String, finalPath: String, digest: Digest, expectedSize: Int64?, reserveFreeBytes: Int64) {
        self.reserveFreeBytes = reserveFreeBytes
        self.fd = fd
        self.tmpPath = tmpPath
        self.finalPath = finalPath
        self.digest = digest
        self.expectedSize = expectedSize
    }

    deinit {
        if !closed {
            close(fd)
            unlink(tmpPath)
        }
    }

    public func append(_ raw: UnsafeRawBufferPointer) throws(CocoonError) {
        written += Int64(raw.count)
        if let expectedSize, written > expectedSize {
            throw .integrity("blob \(digest) is larger than the \(expectedSize) bytes its descriptor declares")
        }
        unchecked += Int64(raw.count)
        if unchecked >= 16 << 20 {
            unchecked = 0
            try FreeSpace.check(tmpPath, adding: 0, reserve: reserveFreeBytes, what: "downloading blob \(digest)")
        }
        hasher.update(bufferPointer: raw)
        guard let base = raw.baseAddress else { return }
        var off = 0
        while off < raw.count {
            let n = Glibc.write(fd, base + off, raw.count - off)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw .internalError("writing blob \(digest): \(String(cString: strerror(errno)))") }
            off += n
        }
    }

    public func append(_ buffer: ByteBuffer) throws(CocoonError) {
        try buffer.withUnsafeReadableBytes { raw in Result { () throws(CocoonError) in try append(raw) } }.get()
    }

    public func append(_ bytes: [UInt8]) throws(CocoonError) {
        try bytes.withUnsafeBytes { raw in Result { () throws(CocoonError) in try append(raw) } }.get()
    }

    /// Checks size and digest, then renames the blob into place.
    public func commit() throws(CocoonError) {
        if let expectedSize, written != expectedSize {
            throw .integrity("blob \(digest) is \(written) bytes, its descriptor declares \(expectedSize)")
        }
        let actual = Digest(hasher: hasher)
        guard actual == digest else {
            throw .integrity(
                "blob digest mismatch: expected \(digest), the registry sent \(actual) (refused, nothing stored)")
        }
        closed = true
        let synced = fsync(fd) == 0
        close(fd)
        guard synced, rename(tmpPath, finalPath) == 0 else {
            unlink(tmpPath)
            throw .internalError("storing blob \(digest): \(String(cString: strerror(errno)))")
        }
    }

    public func abort() {
        guard !closed else { return }
        closed = true
        close(fd)
        unlink(tmpPath)
    }
}
