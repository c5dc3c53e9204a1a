import CZlib

/// One direction of a SPDY/3 session's header compression: a zlib stream primed with the SPDY/3
/// dictionary that lives as long as the session (every header block continues it) and is flushed
/// with Z_SYNC_FLUSH after each block. Owned by one frame encoder or decoder; not shared.
final class SPDYZlibStream {
    enum Direction { case compress, decompress }

    /// Why a header block could not be (de)compressed.
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    private var stream = z_stream()
    private let direction: Direction
    private var ready = false

    init(_ direction: Direction) throws(Failure) {
        self.direction = direction
        let size = Int32(MemoryLayout<z_stream>.size)
        let status: Int32
        switch direction {
        case .compress:
            status = deflateInit2_(
                &stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15, 8, Z_DEFAULT_STRATEGY, zlibVersion(), size)
            guard status == Z_OK else { throw Failure(description: "deflateInit failed (\(status))") }
            let dictStatus = SPDYDictionary.bytes.withUnsafeBufferPointer {
                deflateSetDictionary(&stream, $0.baseAddress, uInt($0.count))
            }
            guard dictStatus == Z_OK else { throw Failure(description: "deflateSetDictionary failed (\(dictStatus))") }
        case .decompress:
            status = inflateInit_(&stream, zlibVersion(), size)
            guard status == Z_OK else { throw Failure(description: "inflateInit failed (\(status))") }
        }
        ready = true
    }

    deinit {
        guard ready else { return }
        switch direction {
        case .compress: deflateEnd(&stream)
        case .decompress: inflateEnd(&stream)
        }
    }

    /// Compresses one header block and flushes it (Z_SYNC_FLUSH), so the peer can decode it at once.
    func compress(_ input: [UInt8]) throws(Failure) -> [UInt8] {
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        var status: Int32 = Z_OK
        var input = input
        input.withUnsafeMutableBufferPointer { inBuf in
            stream.next_in = inBuf.baseAddress
            stream.avail_in = uInt(inBuf.count)
            repeat {
                chunk.withUnsafeMutableBufferPointer { outBuf in
                    stream.next_out = outBuf.baseAddress
                    stream.avail_out = uInt(outBuf.count)
                    status = deflate(&stream, Z_SYNC_FLUSH)
                    output += outBuf[0..<(outBuf.count - Int(stream.avail_out))]
                }
            } while status == Z_OK && stream.avail_out == 0
            stream.next_in = nil
        }
        guard status == Z_OK || status == Z_BUF_ERROR else { throw Failure(description: "deflate failed (\(status))") }
        return output
    }

    /// Decompresses one header block, refusing to produce more than `limit` bytes (a small frame
    /// must not expand into unbounded memory).
    func decompress(_ input: [UInt8], limit: Int) throws(Failure) -> [UInt8] {
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        var input = input
        var failure: Failure?
        input.withUnsafeMutableBufferPointer { inBuf in
            stream.next_in = inBuf.baseAddress
            stream.avail_in = uInt(inBuf.count)
            defer { stream.next_in = nil }
            while true {
                var status: Int32 = Z_OK
                chunk.withUnsafeMutableBufferPointer { outBuf in
                    stream.next_out = outBuf.baseAddress
                    stream.avail_out = uInt(outBuf.count)
                    status = inflate(&stream, Z_SYNC_FLUSH)
                    if status == Z_NEED_DICT {
                        status = SPDYDictionary.bytes.withUnsafeBufferPointer {
                            inflateSetDictionary(&stream, $0.baseAddress, uInt($0.count))
                        }
                        if status == Z_OK { status = inflate(&stream, Z_SYNC_FLUSH) }
                    }
                    output += outBuf[0..<(outBuf.count - Int(stream.avail_out))]
                }
                if output.count > limit {
                    failure = Failure(description: "header block expands beyond \(limit) bytes")
                    return
                }
                if status == Z_BUF_ERROR || (status == Z_OK && stream.avail_in == 0 && stream.avail_out > 0) { return }
                guard status == Z_OK else {
                    failure = Failure(description: "header block does not inflate (zlib \(status))")
                    return
                }
            }
        }
        if let failure { throw failure }
        return output
    }
}
