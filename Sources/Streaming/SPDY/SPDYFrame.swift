/// One SPDY/3.1 frame, as Kubernetes' streaming protocols (remotecommand, portforward) use them
/// over moby/spdystream. Header blocks are already decompressed (`SPDYHeaders`).
public enum SPDYFrame: Sendable, Equatable {
    case synStream(streamID: UInt32, associatedTo: UInt32, priority: UInt8, flags: SPDYFlags, headers: SPDYHeaders)
    case synReply(streamID: UInt32, flags: SPDYFlags, headers: SPDYHeaders)
    case rstStream(streamID: UInt32, status: SPDYStreamStatus)
    case settings(clearPrevious: Bool, entries: [SPDYSetting])
    case ping(id: UInt32)
    case goAway(lastGoodStreamID: UInt32, status: SPDYSessionStatus)
    case headers(streamID: UInt32, flags: SPDYFlags, headers: SPDYHeaders)
    case windowUpdate(streamID: UInt32, delta: UInt32)
    case data(streamID: UInt32, flags: SPDYFlags, payload: [UInt8])

    /// The frame types of SPDY/3 control frames.
    enum ControlType: UInt16 {
        case synStream = 1, synReply = 2, rstStream = 3, settings = 4, ping = 6, goAway = 7, headers = 8
        case windowUpdate = 9
    }
}

/// The flags byte of SYN_STREAM, SYN_REPLY, HEADERS and DATA frames.
public struct SPDYFlags: OptionSet, Sendable, Equatable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    /// The sender's last frame on this stream (it is half-closed).
    public static let fin = SPDYFlags(rawValue: 0x01)
    /// SYN_STREAM only: the receiver must not send on this stream.
    public static let unidirectional = SPDYFlags(rawValue: 0x02)
}

/// RST_STREAM status codes.
public enum SPDYStreamStatus: UInt32, Sendable, Equatable {
    case protocolError = 1, invalidStream, refusedStream, unsupportedVersion, cancel, internalError, flowControlError
    case streamInUse, streamAlreadyClosed, invalidCredentials, frameTooLarge
}

/// GOAWAY status codes.
public enum SPDYSessionStatus: UInt32, Sendable, Equatable {
    case ok = 0, protocolError = 1, internalError = 2
}

/// One SETTINGS entry (`id` 7 is INITIAL_WINDOW_SIZE, 4 MAX_CONCURRENT_STREAMS).
public struct SPDYSetting: Sendable, Equatable {
    public var flags: UInt8
    public var id: UInt32
    public var value: UInt32
    public static let initialWindowSizeID: UInt32 = 7
    public static let maxConcurrentStreamsID: UInt32 = 4
    public init(flags: UInt8 = 0, id: UInt32, value: UInt32) {
        self.flags = flags
        self.id = id
        self.value = value
    }
}

/// A header block: lowercase names with one or more values each, in order. SPDY/3 joins several
/// values of one name with NUL bytes on the wire.
public struct SPDYHeaders: Sendable, Equatable {
    public private(set) var fields: [(name: String, values: [String])]

    public init(_ fields: [(String, String)] = []) {
        self.fields = []
        for (name, value) in fields { add(name, value) }
    }

    /// Adds a value; names are stored lowercase, as SPDY requires.
    public mutating func add(_ name: String, _ value: String) {
        let name = name.lowercased()
        if let i = fields.firstIndex(where: { $0.name == name }) {
            fields[i].values.append(value)
        } else {
            fields.append((name, [value]))
        }
    }

    /// The first value of `name`, if any.
    public subscript(name: String) -> String? {
        fields.first { $0.name == name.lowercased() }?.values.first
    }

    public static func == (a: SPDYHeaders, b: SPDYHeaders) -> Bool {
        a.fields.count == b.fields.count
            && zip(a.fields, b.fields).allSatisfy { $0.name == $1.name && $0.values == $1.values }
    }
}
