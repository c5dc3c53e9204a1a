import Synchronization

/// When a streaming session last moved a byte either way, and the watch that ends it once it has
/// been idle for the configured time (the kubelet's stream idle timeout, 4 hours by default).
final class IdleWatch: Sendable {
    private let last: Mutex<ContinuousClock.Instant>
    let timeout: Duration

    init(timeout: Duration) {
        self.timeout = timeout
        last = Mutex(.now)
    }

    func touch() { last.withLock { $0 = .now } }

    /// Returns once the session has been idle for `timeout` (or at once when cancelled).
    func idle() async {
        while !Task.isCancelled {
            let deadline = last.withLock { $0 } + timeout
            if ContinuousClock.now >= deadline { return }
            // try?: cancellation ends the watch, which is all the loop checks for
            try? await Task.sleep(until: deadline)
        }
    }
}
