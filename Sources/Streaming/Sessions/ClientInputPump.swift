/// A flow-controlled SPDY client's bytes for one stream (an exec's stdin, a forwarded connection's
/// data), written in order by a task of its own, so that the session's read loop keeps reading the
/// client's window updates while a write waits for the pod: else output waiting for the client's
/// window and input waiting for the pod would hold each other up, and one stuck connection would
/// stall the session's others. The client's window for the stream (64 KiB) bounds what waits here;
/// each write reopens it once taken. (A client without flow control is written inline instead: its
/// TCP connection is then the bound.)
struct ClientInputPump {
    private let input: AsyncStream<[UInt8]?>.Continuation

    /// `write` returns false once the pod's side takes no more (the rest is dropped, still
    /// reopening the window); `close` runs at the client's end of input.
    init(
        stream id: UInt32, connection: SPDYConnection, group: inout ThrowingTaskGroup<Void, any Error>,
        write: @escaping @Sendable ([UInt8]) async -> Bool, close: @escaping @Sendable () async -> Void
    ) {
        let (items, input) = AsyncStream<[UInt8]?>.makeStream()
        self.input = input
        group.addTask {
            var open = true
            for await item in items {
                guard let bytes = item else {
                    await close()
                    break
                }
                if open { open = await write(bytes) }
                await connection.consumed(id, bytes.count)
            }
        }
    }

    func send(_ bytes: [UInt8]) { input.yield(bytes) }
    /// The client's end of input: `close` after the bytes before it.
    func end() { input.yield(nil) }
    /// The session is over: the task ends without closing.
    func cancel() { input.finish() }
}
