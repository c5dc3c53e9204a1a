import Synchronization

/// Serializes operations per key (a sandbox or container id) across suspension points, so a Stop
/// and a Remove of the same object never interleave while different objects proceed concurrently.
/// `acquire` waits in FIFO order; `release` hands the key to the next waiter.
public final class KeyedLock: Sendable {
    private struct State {
        var held: Set<String> = []
        var waiters: [String: [CheckedContinuation<Void, Never>]] = [:]
    }
    private let state = Mutex(State())

    public init() {}

    /// Takes the key at once, or nil when someone holds it (a fresh id, reserved synchronously).
    public func tryAcquire(_ key: String) -> Bool {
        state.withLock { $0.held.insert(key).inserted }
    }

    public func acquire(_ key: String) async {
        if tryAcquire(key) { return }
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let mine = state.withLock { s -> Bool in
                if s.held.insert(key).inserted { return true }
                s.waiters[key, default: []].append(c)
                return false
            }
            if mine { c.resume() }
        }
    }

    /// Hands the key to the next waiter, or frees it.
    public func release(_ key: String) {
        let next = state.withLock { s -> CheckedContinuation<Void, Never>? in
            if var queue = s.waiters[key], !queue.isEmpty {
                let next = queue.removeFirst()
                s.waiters[key] = queue.isEmpty ? nil : queue
                return next
            }
            s.held.remove(key)
            return nil
        }
        next?.resume()
    }
}
