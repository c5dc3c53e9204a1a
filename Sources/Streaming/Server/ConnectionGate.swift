import Synchronization

/// Counts the streaming server's open connections and turns away those over the limit, so
/// clients that open connections and never finish them cannot exhaust the daemon's descriptors.
final class ConnectionGate: Sendable {
    let limit: Int
    private let open = Atomic<Int>(0)

    init(limit: Int) { self.limit = limit }

    /// True when the connection may stay (then `leave` must follow when it closes).
    func enter() -> Bool {
        let (_, now) = open.add(1, ordering: .relaxed)
        guard now <= limit else {
            open.subtract(1, ordering: .relaxed)
            return false
        }
        return true
    }

    func leave() { open.subtract(1, ordering: .relaxed) }

    var count: Int { open.load(ordering: .relaxed) }
}
