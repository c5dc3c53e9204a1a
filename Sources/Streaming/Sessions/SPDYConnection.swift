import Logging
import NIOCore

/// One upgraded SPDY connection: the session state and the ordered writer of its frames. Every
/// frame is encoded and queued under this actor, so compressed header blocks reach the client in
/// the order they were compressed. When the client runs SPDY/3.1 flow control, data beyond a
/// stream's window waits here (bounded by the agent's window behind it) until the client opens it.
actor SPDYConnection {
    private struct Waiting {
        var data: [UInt8]
        var fin: Bool
        var written: (@Sendable () -> Void)?
    }

    private let session: SPDYServerSession
    let writer: FrameWriter<ByteBuffer>
    /// Data for streams whose window is closed, in order per stream.
    private var waiting: [UInt32: [Waiting]] = [:]
    /// Set by `finish`: GOAWAY goes once the waiting data has.
    private var finishing: SPDYSessionStatus?
    private var ended = false

    init(activity: IdleWatch) throws(SPDYProtocolError) {
        session = try SPDYServerSession()
        writer = FrameWriter(activity: activity)
    }

    /// Decodes what the client sent; answers pings and misuse at once, and sends what a window
    /// update lets go. Window updates are handled here; the other events are the session's.
    func receive(_ bytes: [UInt8]) throws(SPDYProtocolError) -> [SPDYServerSession.Event] {
        writer.activity.touch()
        let (events, reply) = try session.receive(bytes)
        queue(reply)
        var opened = false
        for event in events {
            switch event {
            case .windowOpened: opened = true
            case .streamReset(let id): drop(id)
            default: break
            }
        }
        if opened { release() }
        return events.filter { if case .windowOpened = $0 { false } else { true } }
    }

    /// `receive` for a session's read loop: nil after a protocol error, when the session has been
    /// ended with GOAWAY (the client's bytes cannot be trusted any further).
    func receive(_ buffer: ByteBuffer, logger: Logger) -> [SPDYServerSession.Event]? {
        do {
            return try receive(Array(buffer.readableBytesView))
        } catch {
            logger.info("SPDY protocol error from client", metadata: ["error": "\(error)"])
            finish(goAway: .protocolError)
            return nil
        }
    }

    /// True once the client runs SPDY/3.1 flow control.
    var flowControlled: Bool { session.flowControlled }

    /// The session used `count` bytes the client sent on `id`: open the client's window again.
    func consumed(_ id: UInt32, _ count: Int) { queue(session.consumed(id, count)) }

    func accept(_ id: UInt32) {
        // try?: a stream the client reset before we answered needs no answer
        if let bytes = try? session.accept(id) { queue(bytes) }
    }

    /// Queues data for a stream; `written` runs when the bytes are on the wire (or at once when the
    /// stream is closed already, so the sender's window still moves).
    func send(_ id: UInt32, _ data: [UInt8], fin: Bool = false, written: (@Sendable () -> Void)? = nil) {
        if waiting[id] != nil || data.count > session.window(id) {
            waiting[id, default: []].append(Waiting(data: data, fin: fin, written: written))
            release()
            return
        }
        transmit(id, data, fin: fin, written: written)
    }

    func reset(_ id: UInt32) {
        drop(id)
        queue(session.reset(id))
    }

    /// FIN on every stream still open our way (after its waiting data), GOAWAY, and the end of
    /// the writer. A protocol error ends at once, dropping what waits.
    func finish(goAway status: SPDYSessionStatus = .ok) {
        guard finishing == nil else { return }
        if status != .ok { for id in Array(waiting.keys) { drop(id) } }
        finishing = status
        for id in session.openStreams { send(id, [], fin: true) }
        release()
    }

    private func transmit(_ id: UInt32, _ data: [UInt8], fin: Bool, written: (@Sendable () -> Void)?) {
        guard let bytes = try? session.send(id, data, fin: fin) else {  // try?: the client closed or reset it
            written?()
            return
        }
        writer.enqueue(ByteBuffer(bytes: bytes), written: written)
    }

    /// Sends what the windows allow now; GOAWAY once nothing waits after `finish`.
    private func release() {
        for id in waiting.keys.sorted() {
            var queue = waiting[id] ?? []
            while let first = queue.first {
                let room = session.window(id)
                if first.data.count <= room {
                    queue.removeFirst()
                    transmit(id, first.data, fin: first.fin, written: first.written)
                } else {
                    if room > 0 {
                        transmit(id, Array(first.data.prefix(room)), fin: false, written: nil)
                        queue[0].data.removeFirst(room)
                    }
                    break
                }
            }
            waiting[id] = queue.isEmpty ? nil : queue
        }
        if let status = finishing, waiting.isEmpty, !ended {
            ended = true
            queue(session.goAway(status))
            writer.finish()
        }
    }

    /// A stream that ended: what waited for it is dropped (its senders' windows still move).
    private func drop(_ id: UInt32) {
        for item in waiting.removeValue(forKey: id) ?? [] { item.written?() }
    }

    private func queue(_ bytes: [UInt8]) {
        if !bytes.isEmpty { writer.enqueue(ByteBuffer(bytes: bytes)) }
    }
}
