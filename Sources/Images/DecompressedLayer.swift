import CArchive
import Errors
import Foundation

/// The uncompressed byte stream of one layer file, read once: libarchive undoes the compression
/// (gzip or zstd, or none; no other filter is enabled), every byte handed on is hashed, so the
/// tar reader that consumes the stream and the layer's diff id (`sha256` of exactly these bytes)
/// come from one decompression. Owns the outer libarchive reader and its buffer.
final class DecompressedLayer {
    private let reader: OpaquePointer
    private let buffer: UnsafeMutableRawBufferPointer
    private var hasher = SHA256Stream()
    private var finished = false
    /// The first error met while reading (the tar reader only sees "-1").
    private(set) var failure: CocoonError?
    let label: String

    init(path: String, label: String) throws(CocoonError) {
        guard let reader = archive_read_new() else { throw .internalError("libarchive: out of memory") }
        archive_read_support_filter_gzip(reader)
        archive_read_support_filter_zstd(reader)
        archive_read_support_format_raw(reader)
        guard archive_read_open_filename(reader, path, 1 << 20) == ARCHIVE_OK else {
            let message = LayerUnpacker.message(reader)
            archive_read_free(reader)
            throw .integrity("layer \(label): \(message)")
        }
        var entry: OpaquePointer?
        let r = archive_read_next_header(reader, &entry)
        guard r == ARCHIVE_OK || r == ARCHIVE_WARN || r == ARCHIVE_EOF else {
            let message = LayerUnpacker.message(reader)
            archive_read_free(reader)
            throw .integrity("layer \(label): \(message)")
        }
        self.reader = reader
        self.finished = r == ARCHIVE_EOF  // an empty file: an empty stream
        self.buffer = .allocate(byteCount: 1 << 20, alignment: 16)
        self.label = label
    }

    deinit {
        archive_read_free(reader)
        buffer.deallocate()
    }

    /// The next chunk of uncompressed bytes (empty at the end), hashed.
    func next() -> UnsafeRawBufferPointer? {
        if finished { return UnsafeRawBufferPointer(start: buffer.baseAddress, count: 0) }
        let n = archive_read_data(reader, buffer.baseAddress, buffer.count)
        if n < 0 {
            failure = failure ?? .integrity("layer \(label): \(LayerUnpacker.message(reader))")
            return nil
        }
        if n == 0 { finished = true }
        let chunk = UnsafeRawBufferPointer(start: buffer.baseAddress, count: n)
        hasher.update(chunk)
        return chunk
    }

    /// Reads what the tar reader left (the end-of-archive blocks and padding) and returns the
    /// digest of the whole uncompressed stream.
    func drainAndDigest() throws(CocoonError) -> Digest {
        while !finished {
            guard next() != nil else { break }
        }
        if let failure { throw failure }
        return hasher.finalize()
    }

    /// Opens `tar` (a reader with only the tar format) on this stream.
    func open(_ tar: OpaquePointer) -> Int32 {
        archive_read_open(tar, Unmanaged.passUnretained(self).toOpaque(), nil, decompressedLayerRead, nil)
    }
}

/// libarchive's read callback for a tar reader fed by a `DecompressedLayer`.
private func decompressedLayerRead(
    _ archive: OpaquePointer?, _ context: UnsafeMutableRawPointer?, _ out: UnsafeMutablePointer<UnsafeRawPointer?>?
) -> la_ssize_t {
    guard let context, let out else { return -1 }
    let layer = Unmanaged<DecompressedLayer>.fromOpaque(context).takeUnretainedValue()
    guard let chunk = layer.next() else { return -1 }
    out.pointee = chunk.baseAddress
    return chunk.count
}
