/// Serializes operations per key (per sandbox id) inside an actor, across suspension points,
/// so a Stop and a Remove of the same sandbox never interleave.
struct KeyedLock {
    private var held: Set<String> = []
    private var waiters: [String: [CheckedContinuation<Void, Never>]] = [:]

    /// True if the caller got the lock; otherwise it must wait with `enqueue`.
    mutating func tryAcquire(_ key: String) -> Bool {
        if held.contains(key) { return false }
        held.insert(key)
        return true
    }

    mutating func enqueue(_ key: String, _ cont: CheckedContinuation<Void, Never>) {
        waiters[key, default: []].append(cont)
    }

    /// Hands the lock to the next waiter, or frees it.
    mutating func release(_ key: String) {
        if var queue = waiters[key], !queue.isEmpty {
            let next = queue.removeFirst()
            waiters[key] = queue.isEmpty ? nil : queue
            next.resume()
        } else {
            held.remove(key)
        }
    }
}
