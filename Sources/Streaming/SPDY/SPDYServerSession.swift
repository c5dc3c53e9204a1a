/// The server side of one SPDY/3.1 session: the streams a client (kubectl, crictl, the API server)
/// opens for one exec, attach or port-forward, what state each is in, and what to answer. Pure
/// state: bytes in, events and bytes out; the connection handler moves the bytes. Everything the
/// client sends is bounded: at most `maxStreams` open streams, frames of at most `maxPayload`.
///
/// Each stream: SYN_STREAM (client) → `accept` (our SYN_REPLY, required before any data of ours) →
/// data both ways → each side's FIN half-closes it; RST_STREAM from either side ends it at once.
///
/// Flow control (SPDY/3.1 stream and session windows) is on once the client declares it runs it, by a
/// SETTINGS INITIAL_WINDOW_SIZE, which we answer with our own SETTINGS (before any SYN_REPLY, so the
/// client knows before it sends data): from then on `window` says how much may be sent, the client
/// may send no more than the windows we gave it (64 KiB a stream and for the session, reopened by
/// `consumed` as its data is used), and a client that overruns them ends the session.
/// moby/spdystream (client-go, crictl, the kubelet) neither sends nor honours windows, so with it
/// windows are only counted, as the kubelet's own server does; TCP's backpressure bounds such a client.
public final class SPDYServerSession {
    /// What the client did.
    public enum Event: Sendable, Equatable {
        case streamOpened(id: UInt32, headers: SPDYHeaders)
        case data(id: UInt32, [UInt8])
        /// The client sends nothing more on this stream (FIN).
        case remoteClosed(id: UInt32)
        /// The client reset the stream: stop using it.
        case streamReset(id: UInt32)
        /// GOAWAY: the client opens no more streams; the session ends.
        case sessionEnded
        /// The client opened our send window (of stream `id`, or of the whole session for 0).
        case windowOpened(id: UInt32)
    }

    /// A misuse of the session by our own code (not the client's fault).
    public struct UsageError: Error, CustomStringConvertible {
        public let description: String
    }

    private struct StreamState {
        var accepted = false
        var remoteOpen = true
        var localOpen = true
        var sendWindow: Int
        var receiveWindow = SPDYServerSession.defaultWindow
    }

    /// SPDY/3.1's window for a new stream and for the session, until SETTINGS says otherwise.
    public static let defaultWindow = 64 << 10
    /// True once the client has shown it runs SPDY/3.1 flow control.
    public private(set) var flowControlled = false
    private var initialWindow = SPDYServerSession.defaultWindow
    private var sessionWindow = SPDYServerSession.defaultWindow
    /// What the client may still send us, once flow-controlled.
    private var sessionReceiveWindow = SPDYServerSession.defaultWindow

    /// DATA frames we send are cut to this size, so one stream never holds the connection for long.
    public static let sendChunk = 32 << 10

    private let decoder: SPDYFrameDecoder
    private let encoder: SPDYFrameEncoder
    private let maxStreams: Int
    private var streams: [UInt32: StreamState] = [:]
    private var lastClientStream: UInt32 = 0
    private var ended = false

    public init(maxStreams: Int = 64, maxPayload: Int = 1 << 20) throws(SPDYProtocolError) {
        decoder = try SPDYFrameDecoder(maxPayload: maxPayload)
        encoder = try SPDYFrameEncoder()
        self.maxStreams = maxStreams
    }

    /// The streams that are open in at least one direction.
    public var openStreams: [UInt32] { streams.keys.sorted() }

    /// Feeds bytes from the client. Returns what happened and the bytes to send back at once (PING
    /// echoes, resets of streams the client misused). A protocol error ends the session: the caller
    /// sends `goAway(.protocolError)` and closes the connection.
    public func receive(_ bytes: [UInt8]) throws(SPDYProtocolError) -> (events: [Event], reply: [UInt8]) {
        decoder.append(bytes)
        var events: [Event] = []
        var reply: [UInt8] = []
        while let frame = try decoder.next() {
            switch frame {
            case .synStream(let id, _, _, let flags, let headers):
                if let refusal = try open(id) {
                    reply += try encoder.encode(.rstStream(streamID: id, status: refusal))
                    continue
                }
                events.append(.streamOpened(id: id, headers: headers))
                if flags.contains(.fin) { events += remoteFin(id) }
            case .data(let id, let flags, let payload):
                try receiveData(id, flags, payload, events: &events, reply: &reply)
            case .headers(let id, let flags, _):
                if flags.contains(.fin), streams[id]?.remoteOpen == true { events += remoteFin(id) }
            case .rstStream(let id, _):
                if streams.removeValue(forKey: id) != nil { events.append(.streamReset(id: id)) }
            case .ping(let id):
                // The client's pings (odd ids) are echoed; answers to ours (even ids) need nothing.
                if id % 2 == 1 { reply += try encoder.encode(.ping(id: id)) }
            case .goAway:
                ended = true
                events.append(.sessionEnded)
            case .windowUpdate(let id, let delta):
                if let opened = openWindow(id, delta) { events.append(opened) }
            case .settings(_, let entries):
                if let opened = try applySettings(entries, reply: &reply) { events.append(opened) }
            case .synReply:
                break  // a client never replies to us
            }
        }
        return (events, reply)
    }

    /// A DATA frame from the client: its bytes as an event (counted against the windows we gave,
    /// once flow-controlled), or a reset for a stream that is not open for it.
    private func receiveData(
        _ id: UInt32, _ flags: SPDYFlags, _ payload: [UInt8], events: inout [Event], reply: inout [UInt8]
    ) throws(SPDYProtocolError) {
        guard let state = streams[id], state.remoteOpen else {
            let status: SPDYStreamStatus = id <= lastClientStream ? .streamAlreadyClosed : .invalidStream
            reply += try encoder.encode(.rstStream(streamID: id, status: status))
            return
        }
        if !payload.isEmpty {
            if flowControlled {
                streams[id]?.receiveWindow = state.receiveWindow - payload.count
                sessionReceiveWindow -= payload.count
                guard state.receiveWindow - payload.count >= 0, sessionReceiveWindow >= 0 else {
                    throw .malformed("stream \(id) sent more than its flow-control window")
                }
            }
            events.append(.data(id: id, payload))
        }
        if flags.contains(.fin) { events += remoteFin(id) }
    }

    /// A WINDOW_UPDATE from the client: widens the session's or the stream's send window; nil for
    /// a stream we no longer know.
    private func openWindow(_ id: UInt32, _ delta: UInt32) -> Event? {
        let delta = Int(delta & 0x7fff_ffff)
        if id == 0 {
            sessionWindow = min(sessionWindow + delta, Int(Int32.max))
        } else if let window = streams[id]?.sendWindow {
            streams[id]?.sendWindow = min(window + delta, Int(Int32.max))
        } else {
            return nil
        }
        return .windowOpened(id: id)
    }

    /// SETTINGS from the client: an INITIAL_WINDOW_SIZE turns flow control on (answered once with
    /// ours) and resizes every stream's send window; nil when it carries none.
    private func applySettings(_ entries: [SPDYSetting], reply: inout [UInt8]) throws(SPDYProtocolError) -> Event? {
        guard let entry = entries.last(where: { $0.id == SPDYSetting.initialWindowSizeID }) else { return nil }
        if !flowControlled {
            let ours = SPDYSetting(id: SPDYSetting.initialWindowSizeID, value: UInt32(Self.defaultWindow))
            reply += try encoder.encode(.settings(clearPrevious: false, entries: [ours]))
        }
        flowControlled = true
        let size = Int(min(entry.value, UInt32(Int32.max)))
        let change = size - initialWindow
        initialWindow = size
        for id in streams.keys { streams[id]?.sendWindow += change }
        return .windowOpened(id: 0)
    }

    /// Our SYN_REPLY for a stream the client opened (empty headers, as the kubelet sends).
    public func accept(_ id: UInt32) throws(UsageError) -> [UInt8] {
        guard var state = streams[id], !state.accepted else {
            throw UsageError(description: "stream \(id) is not waiting to be accepted")
        }
        state.accepted = true
        streams[id] = state
        return try frame(.synReply(streamID: id, flags: [], headers: SPDYHeaders()))
    }

    /// We used `count` bytes the client sent on stream `id`: the WINDOW_UPDATEs that let it send as
    /// much again (nothing without flow control).
    public func consumed(_ id: UInt32, _ count: Int) -> [UInt8] {
        guard flowControlled, count > 0 else { return [] }
        sessionReceiveWindow += count
        streams[id]?.receiveWindow += count
        let delta = UInt32(clamping: count)
        // try?: fixed-size frames, cannot fail
        return ((try? frame(.windowUpdate(streamID: id, delta: delta))) ?? [])
            + ((try? frame(.windowUpdate(streamID: 0, delta: delta))) ?? [])
    }

    /// How many bytes may go on stream `id` now: unbounded without flow control.
    public func window(_ id: UInt32) -> Int {
        guard flowControlled else { return Int.max }
        return max(0, min(streams[id]?.sendWindow ?? 0, sessionWindow))
    }

    /// DATA frames carrying `data` on an accepted stream, the last with FIN when `fin`. Under flow
    /// control the caller sends no more than `window(id)`.
    public func send(_ id: UInt32, _ data: [UInt8], fin: Bool = false) throws(UsageError) -> [UInt8] {
        guard var state = streams[id], state.accepted, state.localOpen else {
            throw UsageError(description: "stream \(id) is not open for sending")
        }
        var out: [UInt8] = []
        var offset = 0
        repeat {
            let end = min(offset + Self.sendChunk, data.count)
            let last = end == data.count
            out += try frame(.data(streamID: id, flags: last && fin ? .fin : [], payload: Array(data[offset..<end])))
            offset = end
        } while offset < data.count
        state.sendWindow -= data.count
        sessionWindow -= data.count
        if fin { state.localOpen = false }
        streams[id] = state.localOpen || state.remoteOpen ? state : nil
        return out
    }

    /// Ends a stream at once (RST_STREAM).
    public func reset(_ id: UInt32, status: SPDYStreamStatus = .cancel) -> [UInt8] {
        streams[id] = nil
        return (try? frame(.rstStream(streamID: id, status: status))) ?? []  // try?: fixed-size frame, cannot fail
    }

    /// GOAWAY: the session is over (`status` says whether it ended well).
    public func goAway(_ status: SPDYSessionStatus = .ok) -> [UInt8] {
        ended = true
        // try?: fixed-size frame, cannot fail
        return (try? frame(.goAway(lastGoodStreamID: lastClientStream, status: status))) ?? []
    }

    private func frame(_ f: SPDYFrame) throws(UsageError) -> [UInt8] {
        do {
            return try encoder.encode(f)
        } catch {
            throw UsageError(description: "cannot encode \(f): \(error)")
        }
    }

    /// Registers a client stream, or says why it is refused.
    private func open(_ id: UInt32) throws(SPDYProtocolError) -> SPDYStreamStatus? {
        guard id % 2 == 1, id > lastClientStream else {
            // Client streams are odd and increasing; anything else breaks the session.
            throw .malformed("SYN_STREAM \(id) after \(lastClientStream) (client stream ids are odd and increasing)")
        }
        lastClientStream = id
        guard !ended else { return .refusedStream }
        guard streams.count < maxStreams else { return .refusedStream }
        streams[id] = StreamState(sendWindow: initialWindow)
        return nil
    }

    private func remoteFin(_ id: UInt32) -> [Event] {
        guard var state = streams[id] else { return [] }
        state.remoteOpen = false
        streams[id] = state.localOpen ? state : nil
        return [.remoteClosed(id: id)]
    }
}
