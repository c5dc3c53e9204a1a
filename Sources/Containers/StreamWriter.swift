import AgentClient

/// One stream's writes to the guest (a process's stdin, a forwarded connection): each is sent at
/// once, in order, with up to `limit` bytes not yet answered, so the channel stays busy while the
/// guest writes the earlier ones (one write at a time waited a guest round trip per client frame).
/// The guest queues at most 4 MiB per stream (its `PendingWrite.limit`); this stays well under.
/// One writer at a time: the session's task that reads its client.
actor StreamWriter {
    static let limit = 1 << 20

    private let bound: Int
    private var unanswered: [(reply: AgentReply, bytes: Int)] = []
    private var bytes = 0

    init(limit: Int = StreamWriter.limit) { bound = limit }

    /// Sends `count` bytes with `send` once fewer than the limit are unanswered; throws the first
    /// error the guest answered an earlier write with.
    func write(_ count: Int, _ send: @Sendable () -> AgentReply) async throws(AgentClientError) {
        try await awaitOldest { bytes + count > bound }
        unanswered.append((send(), count))
        bytes += count
    }

    /// Waits for every write sent so far.
    func flush() async throws(AgentClientError) { try await awaitOldest { true } }

    /// Waits for the oldest answers, in order, while `more` says so and any are outstanding.
    private func awaitOldest(while more: () -> Bool) async throws(AgentClientError) {
        while more(), !unanswered.isEmpty {
            let first = unanswered.removeFirst()
            bytes -= first.bytes
            try await first.reply.get()
        }
    }

    /// Bytes sent and not yet answered (tests).
    var inFlight: Int { bytes }
}
