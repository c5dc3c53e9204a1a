import NIOCore

/// Writes a connection's outbound messages in the order they were queued, from one task, so that
/// frames encoded in order (SPDY's compressed headers depend on it) reach the wire in order. Each
/// message may carry a callback run once it is written: that is when a stream's output counts as
/// delivered and the agent may send more (the queue holds at most the streams' windows).
final class FrameWriter<Message: Sendable>: Sendable {
    struct Item: Sendable {
        var message: Message
        var written: (@Sendable () -> Void)?
    }

    private let continuation: AsyncStream<Item>.Continuation
    let items: AsyncStream<Item>
    /// Touched by every write (and by the session's reads).
    let activity: IdleWatch

    init(activity: IdleWatch) {
        self.activity = activity
        (items, continuation) = AsyncStream<Item>.makeStream()
    }

    func enqueue(_ message: Message, written: (@Sendable () -> Void)? = nil) {
        continuation.yield(Item(message: message, written: written))
    }

    /// No more messages: the writer ends once it has written what is queued.
    func finish() { continuation.finish() }

    /// Writes every message until `finish`; run by the connection's task.
    func run(_ outbound: NIOAsyncChannelOutboundWriter<Message>) async throws {
        for await item in items {
            try await outbound.write(item.message)
            activity.touch()
            item.written?()
        }
    }
}
