import Synchronization

/// A terminal session's stdin that arrives before its process has started: a client may type (or
/// its terminal may send a byte, or end its input) before its first terminal size, which the start
/// waits for. Such bytes, and the end of input, are held (at most `limit` bytes) and delivered in
/// order by a task of its own once the process runs, so the session's read loop goes on reading
/// and sees the size. Owns that task: `drain` awaits it, `cancel` ends it (nothing more is written).
final class EarlyStdin: Sendable {
    /// What a client may send before its process starts without being held back (beyond it, the
    /// read loop waits for the start: the client's connection is then the bound).
    static let limit = 64 << 10
    private enum Item {
        case bytes([UInt8])
        case end
    }
    private let held = Mutex(0)
    private let input: AsyncStream<Item>.Continuation
    private let writer: Task<Bool, Never>

    init(_ gate: SizedStart) {
        let (items, input) = AsyncStream<Item>.makeStream()
        self.input = input
        writer = Task {
            guard let process = await gate.process(), !Task.isCancelled else { return false }
            for await item in items {
                guard !Task.isCancelled else { return false }  // the session is over
                switch item {
                case .bytes(let chunk):
                    do {
                        try await process.write(chunk)
                    } catch {
                        return false  // the process closed its stdin or ended: the rest is dropped
                    }
                case .end:
                    await process.closeStdin()
                    return false
                }
            }
            return true
        }
    }

    /// Holds `bytes` for the process; false when that would pass `limit` (nothing is taken).
    func take(_ bytes: [UInt8]) -> Bool {
        let fits = held.withLock { held in
            guard held + bytes.count <= Self.limit else { return false }
            held += bytes.count
            return true
        }
        if fits { input.yield(.bytes(bytes)) }
        return fits
    }

    /// The client's end of input: the process's stdin is closed after the held bytes.
    func end() {
        input.yield(.end)
        input.finish()
    }

    /// Waits until every held byte is written (so that later input follows it): false when the
    /// process takes no more input (or never started).
    func drain() async -> Bool {
        input.finish()
        return await writer.value
    }

    /// The session is over: nothing more is written.
    func cancel() {
        input.finish()
        writer.cancel()
    }
}
