import CSpawn
import Crypto
import Errors
import Foundation
import Persistence

/// What a saved template is and what it was made from (`template.json`).
struct TemplateManifest: Codable, Sendable, Equatable {
    /// The hash of `inputs`: a template whose inputs changed is rebuilt.
    var key: String
    /// What the template depends on, one `name=value` each (files by size, mtime and inode).
    var inputs: [String]
    var vcpus: Int
    var memoryMiB: Int
    /// SHA-256 over the RAM's non-zero MiB chunks (each with its offset), and over the state file.
    var ramDigest: String
    var stateDigest: String
    /// How much of the RAM is not zero (what a clone shares with the others).
    var ramDataBytes: Int64
    var builtAtNs: Int64
    /// From launching the template VM to its saved state.
    var buildMs: Double
}

/// A template on disk, under `<state_root>/templates/<handler>/`: `ram` (the guest's memory, sparse:
/// zero MiB chunks are holes), `state` (QEMU's device state) and `template.json`. The files are
/// checked against the manifest's digests when loaded; a clone never maps the file itself but a
/// sealed memfd loaded from it, so neither a later change of the file nor a daemon restart touches a
/// running clone.
enum TemplateFiles {
    static let chunk = 1 << 20
    /// lseek's SEEK_DATA (Linux; Glibc's module does not export it).
    private static let seekData: Int32 = 3

    static func ramPath(_ dir: String) -> String { dir + "/ram" }
    static func statePath(_ dir: String) -> String { dir + "/state" }
    static func manifestPath(_ dir: String) -> String { dir + "/template.json" }

    static func readManifest(_ dir: String) -> TemplateManifest? {
        guard let data = FileManager.default.contents(atPath: manifestPath(dir)) else { return nil }
        return try? JSONDecoder().decode(TemplateManifest.self, from: data)  // try?: unreadable is absent
    }

    static func writeManifest(_ manifest: TemplateManifest, _ dir: String) throws(CocoonError) {
        do {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try AtomicFile.write(try encoder.encode(manifest), to: manifestPath(dir))
        } catch {
            throw .internalError("cannot write the template manifest in \(dir): \(error)", cause: error)
        }
    }

    /// Copies the template's RAM (`fd`, `size` bytes) to `path`, only its non-zero chunks; returns
    /// the digest and how many bytes were data.
    static func saveRAM(_ fd: Int32, size: Int, to path: String) throws(CocoonError) -> (digest: String, data: Int64) {
        let out = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard out >= 0 else { throw failure("create", path) }
        defer { close(out) }
        var hasher = SHA256()
        var data: Int64 = 0
        try forEachDataChunk(fd, size: size, what: "template RAM") { (offset, chunk) throws(CocoonError) in
            let written = chunk.withUnsafeBytes { pwrite(out, $0.baseAddress, $0.count, off_t(offset)) }
            guard written == chunk.count else { throw failure("write", path) }
            hash(&hasher, offset, chunk)
            data += Int64(chunk.count)
        }
        guard ftruncate(out, off_t(size)) == 0, fsync(out) == 0 else { throw failure("finish", path) }
        return (hex(hasher.finalize()), data)
    }

    /// A new template memfd with the RAM saved at `path`, checked against `digest`, then sealed.
    static func loadRAM(from path: String, size: Int, digest: String, name: String) throws(CocoonError) -> Int32 {
        let input = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard input >= 0 else { throw failure("open", path) }
        defer { close(input) }
        var st = stat()
        guard fstat(input, &st) == 0, st.st_size == size else {
            throw .integrity("template RAM \(path) does not have the template's size (\(size) bytes)")
        }
        let fd = cocoon_template_ram(name, UInt64(size))
        guard fd >= 0 else { throw failure("create a memfd for", path) }
        var hasher = SHA256()
        do throws(CocoonError) {
            try forEachDataChunk(input, size: size, what: path) { (offset, chunk) throws(CocoonError) in
                let written = chunk.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(offset)) }
                guard written == chunk.count else { throw failure("fill the memfd from", path) }
                hash(&hasher, offset, chunk)
            }
            guard hex(hasher.finalize()) == digest else {
                throw .integrity("template RAM \(path) does not match its checksum")
            }
            guard cocoon_seal_writes(fd) == 0 else { throw failure("seal the memfd of", path) }
        } catch {
            close(fd)
            throw error
        }
        posix_fadvise(input, 0, 0, Int32(POSIX_FADV_DONTNEED))  // the memfd holds it now
        return fd
    }

    /// SHA-256 of a small file (the device state).
    static func digest(ofFile path: String) throws(CocoonError) -> String {
        guard let data = FileManager.default.contents(atPath: path) else { throw failure("read", path) }
        return hex(SHA256.hash(data: data))
    }

    /// Calls `body` with each chunk of `fd` that has data and is not all zero (holes are skipped).
    private static func forEachDataChunk(
        _ fd: Int32, size: Int, what: String, _ body: (Int, [UInt8]) throws(CocoonError) -> Void
    ) throws(CocoonError) {
        var buffer = [UInt8](repeating: 0, count: chunk)
        let zeros = [UInt8](repeating: 0, count: chunk)
        var offset = 0
        while offset < size {
            let data = lseek(fd, off_t(offset), seekData)
            if data < 0 {
                guard errno == ENXIO else { throw failure("seek in", what) }
                return  // nothing but holes to the end
            }
            offset = Int(data) / chunk * chunk
            guard offset < size else { return }
            let length = min(chunk, size - offset)
            let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, length, off_t(offset)) }
            guard n == length else { throw failure("read", what) }
            let differs = buffer.withUnsafeBytes { b in
                zeros.withUnsafeBytes { z in
                    guard let bytes = b.baseAddress, let zero = z.baseAddress else { return true }
                    return memcmp(bytes, zero, n) != 0
                }
            }
            if differs { try body(offset, Array(buffer[0..<n])) }
            offset += length
        }
    }

    private static func hash(_ hasher: inout SHA256, _ offset: Int, _ chunk: [UInt8]) {
        withUnsafeBytes(of: UInt64(offset).littleEndian) { hasher.update(bufferPointer: $0) }
        hasher.update(data: chunk)
    }

    private static func hex(_ digest: SHA256.Digest) -> String { digest.map { String(format: "%02x", $0) }.joined() }

    private static func failure(_ what: String, _ path: String) -> CocoonError {
        .internalError("cannot \(what) \(path): \(String(cString: strerror(errno)))")
    }
}
