/// One frame of stream bytes from the guest (a forwarded connection's `PortData`, a process's
/// `ProcessOutput`), built in place: the bytes are read straight into a buffer behind room for the
/// header, and the header is then written backwards in front of them. The result is byte for byte
/// what `AgentFrame.encode` makes of the same event (fields in number order, defaults left out), so
/// the host decodes it as any other frame; it just costs no copy of the bytes and no protobuf
/// encoder, which under emulation is most of what moving a stream costs the guest.
public struct StreamFrame: Sendable {
    /// Whose bytes these are: the header fields of the event.
    public enum Header: Sendable, Equatable {
        case portData(connectionID: UInt64)
        case output(containerID: String, execID: String, stream: Cocoon_Agent_V4_ProcessOutput.Stream)
    }

    /// Room kept for the header: the length prefix, the tags and lengths, and two ids of up to 128
    /// bytes each (longer ids are refused).
    public static let headroom = 320

    private var storage: [UInt8]
    private var start: Int
    /// How many stream bytes the frame carries.
    public let payloadCount: Int
    public let header: Header

    /// Reads up to `atMost` bytes with `read` (which returns a count, or 0 or less for EOF and
    /// errors) and frames them. nil, with what `read` returned, when it read nothing.
    public static func read(
        _ header: Header, atMost: Int, _ read: (UnsafeMutableRawBufferPointer) -> Int
    ) -> (frame: StreamFrame?, result: Int) {
        guard header.fits else { return (nil, -1) }
        var storage = [UInt8](unsafeUninitializedCapacity: headroom + atMost) { buffer, count in
            count = headroom + atMost
        }
        let n = storage.withUnsafeMutableBytes { raw in
            read(UnsafeMutableRawBufferPointer(rebasing: raw[headroom..<(headroom + atMost)]))
        }
        guard n > 0 else { return (nil, n) }
        let payload = min(n, atMost)
        storage.removeLast(atMost - payload)
        // Through the raw buffer: a writer holding a second reference would copy the storage.
        let start = storage.withUnsafeMutableBytes { raw in
            var writer = BackwardWriter(raw: raw, start: headroom)
            writer.writeHeader(header, payload: payload)
            return writer.start
        }
        return (StreamFrame(storage: storage, start: start, payloadCount: payload, header: header), n)
    }

    private init(storage: [UInt8], start: Int, payloadCount: Int, header: Header) {
        self.storage = storage
        self.start = start
        self.payloadCount = payloadCount
        self.header = header
    }

    /// The stream bytes it carries (a native pod's agent also writes a container's log from them).
    public var payload: ArraySlice<UInt8> { storage[(storage.count - payloadCount)...] }

    /// The whole frame, length prefix first.
    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try storage.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[start...])) }
    }

    /// The frame as an array (tests, and callers that need one).
    public var bytes: [UInt8] { Array(storage[start...]) }
}

extension StreamFrame.Header {
    fileprivate var fits: Bool {
        switch self {
        case .portData: true
        case .output(let c, let e, _): c.utf8.count <= 128 && e.utf8.count <= 128
        }
    }
}

/// Prepends protobuf fields in front of `start`, last field first.
private struct BackwardWriter {
    let raw: UnsafeMutableRawBufferPointer
    var start: Int

    mutating func byte(_ b: UInt8) {
        start -= 1
        raw[start] = b
    }

    mutating func varint(_ value: UInt64) {
        var count = 1
        while count < 10, value >> (7 * UInt64(count)) != 0 { count += 1 }
        for i in stride(from: count - 1, through: 0, by: -1) {
            let group = UInt8(truncatingIfNeeded: value >> (7 * UInt64(i))) & 0x7f
            byte(i == count - 1 ? group : group | 0x80)
        }
    }

    mutating func tag(_ field: UInt64, _ wireType: UInt64) { varint(field << 3 | wireType) }

    /// A length-delimited field whose contents are already in place from `start` up to `end`.
    mutating func wrap(field: UInt64, since end: Int) {
        varint(UInt64(end - start))
        tag(field, 2)
    }

    mutating func string(field: UInt64, _ s: String) {
        guard !s.isEmpty else { return }
        let utf8 = Array(s.utf8)
        start -= utf8.count
        UnsafeMutableRawBufferPointer(rebasing: raw[start..<(start + utf8.count)]).copyBytes(from: utf8)
        varint(UInt64(utf8.count))
        tag(field, 2)
    }

    mutating func writeHeader(_ header: StreamFrame.Header, payload: Int) {
        let end = start + payload
        // Envelope { event = 4 { port_data = 4 { connection_id = 1; data = 2 } | output = 2 {
        //   container_id = 1; exec_id = 2; stream = 3; data = 4 } } }
        switch header {
        case .portData(let id):
            wrap(field: 2, since: end)
            if id != 0 {
                varint(id)
                tag(1, 0)
            }
            wrap(field: 4, since: end)
        case .output(let containerID, let execID, let stream):
            wrap(field: 4, since: end)
            if stream.rawValue != 0 {
                varint(UInt64(truncatingIfNeeded: stream.rawValue))
                tag(3, 0)
            }
            string(field: 2, execID)
            string(field: 1, containerID)
            wrap(field: 2, since: end)
        }
        wrap(field: 4, since: end)
        let n = UInt32(end - start)
        for shift in [0, 8, 16, 24] as [UInt32] { byte(UInt8(n >> shift & 0xff)) }
    }
}
