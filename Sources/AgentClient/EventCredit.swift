import Synchronization

/// The bytes of one pod's agent events that the host has received and not yet handled (written to a
/// log, given to a session). Over `limit` the agent's channel stops reading: a guest that floods
/// output then blocks in its own writes, and the daemon's memory stays bounded. Once the consumer
/// has handled enough to be under half the limit again, the channel reads on. Every event counts at
/// least `eventFloor` bytes, so a flood of tiny events is bounded too.
public final class EventCredit: Sendable {
    public static let defaultLimit = 4 << 20
    static let eventFloor = 256

    private struct State {
        var outstanding = 0
        var paused = false
        var resume: (@Sendable () -> Void)?
    }

    public let limit: Int
    private let state = Mutex(State())

    public init(limit: Int = EventCredit.defaultLimit) { self.limit = limit }

    /// What an event costs.
    public static func cost(_ event: AgentEvent) -> Int {
        switch event {
        case .output(_, _, _, let data), .portData(_, let data): max(eventFloor, data.count)
        default: eventFloor
        }
    }

    /// The channel received an event of `cost`; false when it should stop reading until resumed.
    func charge(_ cost: Int) -> Bool {
        state.withLock { s in
            s.outstanding += cost
            if s.outstanding > limit { s.paused = true }
            return !s.paused
        }
    }

    /// How the channel reads again.
    func onResume(_ resume: @escaping @Sendable () -> Void) { state.withLock { $0.resume = resume } }

    /// The consumer handled an event of `cost` (`cost(_:)` of it).
    public func release(_ cost: Int) {
        let resume = state.withLock { s -> (@Sendable () -> Void)? in
            s.outstanding = max(0, s.outstanding - cost)
            guard s.paused, s.outstanding <= limit / 2 else { return nil }
            s.paused = false
            return s.resume
        }
        resume?()
    }

    /// Bytes received and not yet handled (tests, status).
    public var outstanding: Int { state.withLock { $0.outstanding } }
}
