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

/// Finds a record id from a full id or a unique prefix, as crictl lets users type them.
enum IDPrefix {
    static func resolve(_ idOrPrefix: String, in keys: Dictionary<String, some Any>.Keys, what: String, field: String) throws(SandboxError) -> String {
        guard !idOrPrefix.isEmpty else { throw .invalidArgument("\(field) must not be empty") }
        if keys.contains(idOrPrefix) { return idOrPrefix }
        let matches = keys.filter { $0.hasPrefix(idOrPrefix) }
        if matches.count == 1, let only = matches.first { return only }
        if matches.count > 1 { throw .invalidArgument("\(what) id prefix \"\(idOrPrefix)\" is ambiguous") }
        throw .notFound("\(what) \"\(idOrPrefix)\" not found")
    }

    /// Like `resolve`, but nil where the id matches nothing (idempotent stop and remove).
    static func resolveIfKnown(_ idOrPrefix: String, in keys: Dictionary<String, some Any>.Keys, what: String, field: String) throws(SandboxError) -> String? {
        do {
            return try resolve(idOrPrefix, in: keys, what: what, field: field)
        } catch {
            if case .notFound = error { return nil }
            throw error
        }
    }
}
