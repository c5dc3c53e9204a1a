import Logging
import NIOCore

/// One upgraded SPDY connection: the session state and the ordered writer of its frames. Every
/// frame is encoded and queued under this actor, so compressed header blocks reach the client in
/// the order they were compressed.
actor SPDYConnection {
    private let session: SPDYServerSession
    let writer: FrameWriter<ByteBuffer>

    init(activity: IdleWatch) throws(SPDYProtocolError) {
        session = try SPDYServerSession()
        writer = FrameWriter(activity: activity)
    }

    /// Decodes what the client sent; answers pings and misuse at once.
    func receive(_ bytes: [UInt8]) throws(SPDYProtocolError) -> [SPDYServerSession.Event] {
        writer.activity.touch()
        let (events, reply) = try session.receive(bytes)
        queue(reply)
        return events
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

    func accept(_ id: UInt32) {
        // try?: a stream the client reset before we answered needs no answer
        if let bytes = try? session.accept(id) { queue(bytes) }
    }

    /// Queues data for a stream; `written` runs when the bytes are on the wire (or at once when the
    /// stream is closed already, so the sender's window still moves).
    func send(_ id: UInt32, _ data: [UInt8], fin: Bool = false, written: (@Sendable () -> Void)? = nil) {
        guard let bytes = try? session.send(id, data, fin: fin) else {  // try?: the client closed or reset it
            written?()
            return
        }
        writer.enqueue(ByteBuffer(bytes: bytes), written: written)
    }

    func reset(_ id: UInt32) { queue(session.reset(id)) }

    /// FIN on every stream still open our way, GOAWAY, and the end of the writer.
    func finish(goAway status: SPDYSessionStatus = .ok) {
        for id in session.openStreams { send(id, [], fin: true) }
        queue(session.goAway(status))
        writer.finish()
    }

    private func queue(_ bytes: [UInt8]) {
        if !bytes.isEmpty { writer.enqueue(ByteBuffer(bytes: bytes)) }
    }
}
