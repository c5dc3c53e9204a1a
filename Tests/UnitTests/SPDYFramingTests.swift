import Testing

@testable import Streaming

/// SPDY/3.1 framing: the byte layout of each frame, header compression with the SPDY/3 dictionary
/// (against bytes made by an independent zlib), and the limits on what a peer may send.
@Suite struct SPDYFramingTests {
    static func hex(_ text: String) -> [UInt8] {
        var bytes: [UInt8] = []
        var chars = text.makeIterator()
        while let a = chars.next(), let b = chars.next(), let v = UInt8(String([a, b]), radix: 16) { bytes.append(v) }
        return bytes
    }

    func decodeAll(_ bytes: [UInt8], _ decoder: SPDYFrameDecoder) throws -> [SPDYFrame] {
        try decodeFrames(bytes, decoder)
    }

    @Test func controlAndDataFramesHaveTheDocumentedLayout() throws {
        let encoder = try SPDYFrameEncoder()
        #expect(try encoder.encode(.ping(id: 1)) == [0x80, 0x03, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04, 0, 0, 0, 1])
        #expect(
            try encoder.encode(.data(streamID: 5, flags: .fin, payload: Array("hi".utf8))) == [
                0, 0, 0, 5, 1, 0, 0, 2, 0x68, 0x69,
            ])
        #expect(
            try encoder.encode(.rstStream(streamID: 3, status: .cancel)) == [
                0x80, 3, 0, 3, 0, 0, 0, 8, 0, 0, 0, 3, 0, 0, 0, 5,
            ])
        #expect(
            try encoder.encode(.windowUpdate(streamID: 7, delta: 65536))
                == [0x80, 3, 0, 9, 0, 0, 0, 8, 0, 0, 0, 7, 0, 1, 0, 0])
        #expect(
            try encoder.encode(.goAway(lastGoodStreamID: 9, status: .ok)) == [
                0x80, 3, 0, 7, 0, 0, 0, 8, 0, 0, 0, 9, 0, 0, 0, 0,
            ])
        #expect(
            try encoder.encode(.settings(clearPrevious: false, entries: [SPDYSetting(id: 7, value: 1 << 20)]))
                == [0x80, 3, 0, 4, 0, 0, 0, 12, 0, 0, 0, 1, 0, 0, 0, 7, 0, 0x10, 0, 0])
    }

    /// Bytes made by Go's spdystream (moby/spdystream `spdy`, the framer kubectl and the kubelet
    /// use), captured once: our encoder must produce the same control and data frames.
    @Test func framesMatchWhatGoSpdystreamWrites() throws {
        let encoder = try SPDYFrameEncoder()
        let cases: [(SPDYFrame, String)] = [
            (.rstStream(streamID: 1, status: .cancel), "80030003000000080000000100000005"),
            (
                .settings(
                    clearPrevious: false,
                    entries: [SPDYSetting(flags: 1, id: 5, value: 10), SPDYSetting(flags: 2, id: 1, value: 1)]),
                "800300040000001400000002010000050000000a0200000100000001"
            ),
            (.ping(id: 31337), "800300060000000400007a69"),
            (.goAway(lastGoodStreamID: 31337, status: .protocolError), "800300070000000800007a6900000001"),
            (.goAway(lastGoodStreamID: 0, status: .ok), "80030007000000080000000000000000"),
            (.windowUpdate(streamID: 31337, delta: 1), "800300090000000800007a6900000001"),
            (.data(streamID: 1, flags: [], payload: Array("hello".utf8)), "000000010000000568656c6c6f"),
            (.data(streamID: 1, flags: .fin, payload: []), "0000000101000000"),
        ]
        for (frame, wire) in cases {
            #expect(try encoder.encode(frame) == Self.hex(wire), "\(frame)")
            #expect(try decodeAll(Self.hex(wire), try SPDYFrameDecoder()) == [frame])
        }
        // Uncompressed header blocks, as Go lays them out (pairs, lengths, NUL-joined values).
        #expect(
            SPDYHeaderBlock.encode(SPDYHeaders([("streamtype", "error")]))
                == Self.hex("000000010000000a73747265616d74797065000000056572726f72"))
        #expect(
            SPDYHeaderBlock.encode(SPDYHeaders([("a", "x"), ("a", "y")]))
                == Self.hex("00000001000000016100000003780079"))
    }

    /// Header blocks compressed by Go (its zlib, the SPDY/3 dictionary, one stream per direction):
    /// a client's three SYN_STREAMs, then a server's two SYN_REPLYs, each continuing its stream.
    @Test func decodesHeaderBlocksCompressedByGo() throws {
        let client = Self.hex(
            "80030001000000290000000100000000000078f9e3c6a7c26260606004a7b392a2d4c45c6851c29a0a0a6800000000ffff"
                + "800300010000001700000003000000000000c22e555c92929907000000ffff"
                + "800300010100001900000005000000000000c22ac5565c92925f5a02000000ffff")
        let frames = try decodeAll(client, try SPDYFrameDecoder())
        let types = frames.compactMap { f -> String? in
            guard case .synStream(_, 0, 0, _, let headers) = f else { return nil }
            return headers["streamtype"]
        }
        #expect(types == ["error", "stdin", "stdout"])
        guard case .synStream(5, _, _, let flags, _)? = frames.last else {
            Issue.record("third frame: \(frames)")
            return
        }
        #expect(flags == .fin)

        let server = Self.hex(
            "80030002000000140000000178f9e3c6a7c26260606000000000ffff" + "800300020000000c00000003026100000000ffff")
        #expect(
            try decodeAll(server, try SPDYFrameDecoder()) == [
                .synReply(streamID: 1, flags: [], headers: SPDYHeaders()),
                .synReply(streamID: 3, flags: [], headers: SPDYHeaders()),
            ])
    }

    @Test func everyFrameRoundTripsThroughOneSession() throws {
        let encoder = try SPDYFrameEncoder()
        let decoder = try SPDYFrameDecoder()
        let frames: [SPDYFrame] = [
            .synStream(
                streamID: 1, associatedTo: 0, priority: 3, flags: [],
                headers: SPDYHeaders([("streamType", "stdin"), ("port", "8080"), ("requestID", "0")])),
            .synReply(
                streamID: 1, flags: [], headers: SPDYHeaders([("x-stream-protocol-version", "v4.channel.k8s.io")])),
            .headers(streamID: 1, flags: .fin, headers: SPDYHeaders([("streamtype", "resize")])),
            .data(streamID: 1, flags: [], payload: Array(repeating: 0xab, count: 70_000)),
            .data(streamID: 2, flags: .fin, payload: []),
            .rstStream(streamID: 1, status: .refusedStream),
            .settings(clearPrevious: true, entries: [SPDYSetting(flags: 1, id: 4, value: 100)]),
            .ping(id: 0xdead_beef),
            .goAway(lastGoodStreamID: 1, status: .internalError),
            .windowUpdate(streamID: 1, delta: 0x7fff_ffff),
        ]
        var wire: [UInt8] = []
        for f in frames { wire += try encoder.encode(f) }
        // Delivered a few bytes at a time, as TCP may.
        var decoded: [SPDYFrame] = []
        var i = 0
        while i < wire.count {
            decoder.append(Array(wire[i..<min(i + 7, wire.count)]))
            i += 7
            while let f = try decoder.next() { decoded.append(f) }
        }
        #expect(
            decoded
                == frames.map { f in
                    // Header names travel lowercase.
                    if case .synStream(let id, let a, let p, let fl, _) = f {
                        return .synStream(
                            streamID: id, associatedTo: a, priority: p, flags: fl,
                            headers: SPDYHeaders([("streamtype", "stdin"), ("port", "8080"), ("requestid", "0")]))
                    }
                    return f
                })
    }

    @Test func aPeerCannotMakeTheDecoderBufferOrInflateWithoutBound() throws {
        // A frame announcing 16 MiB is refused from its 8-byte head, before any body is buffered.
        let big = try SPDYFrameDecoder(maxPayload: 1 << 20)
        big.append([0, 0, 0, 1, 0, 0xff, 0xff, 0xff])
        #expect(throws: SPDYProtocolError.frameTooLarge(length: (1 << 24) - 1, limit: 1 << 20)) { _ = try big.next() }

        // 64 KiB of zeros compress to a few hundred bytes; the block limit stops the expansion.
        let encoder = try SPDYFrameEncoder()
        let bomb = try encoder.encode(
            .headers(streamID: 1, flags: [], headers: SPDYHeaders([("x", String(repeating: "a", count: 64 << 10))])))
        #expect(bomb.count < 2048)
        let small = try SPDYFrameDecoder(maxHeaderBlock: 4096)
        small.append(bomb)
        #expect(throws: SPDYProtocolError.self) { _ = try small.next() }

        // Other versions are refused; unknown control types are skipped.
        let v2 = try SPDYFrameDecoder()
        v2.append([0x80, 0x02, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1])
        #expect(throws: SPDYProtocolError.unsupportedVersion(2)) { _ = try v2.next() }
        let unknown = try SPDYFrameDecoder()
        unknown.append([0x80, 0x03, 0, 0x0a, 0, 0, 0, 2, 9, 9] + (try SPDYFrameEncoder().encode(.ping(id: 2))))
        #expect(try unknown.next() == .ping(id: 2))

        // A truncated header block or a bad count is an error, never a crash.
        let cut = try SPDYFrameDecoder()
        cut.append([0x80, 3, 0, 1, 0, 0, 0, 4, 0, 0, 0, 1])
        #expect(throws: SPDYProtocolError.self) { _ = try cut.next() }
    }
}
