import AgentAPI

/// A request answered later (a write that waited for its fd), with the failure if it failed.
public struct DeferredReply: Sendable {
    public var id: UInt64
    public var failure: AgentFailure?

    public init(id: UInt64, failure: AgentFailure? = nil) {
        self.id = id
        self.failure = failure
    }
}

/// What the agent sends the host unasked: an event, or stream bytes framed in place.
public enum Outgoing: Sendable {
    case event(Cocoon_Agent_V4_Event)
    case stream(StreamFrame)
}

extension Outgoing {
    /// Process output bytes it carries (what the backlog limit counts).
    public var outputBytes: Int {
        switch self {
        case .event: 0
        case .stream(let frame):
            if case .output = frame.header { frame.payloadCount } else { 0 }
        }
    }
}
