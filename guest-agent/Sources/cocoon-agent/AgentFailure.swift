import AgentAPI

/// A request the agent refuses, carried back to the host as an `AgentError` with its code.
struct AgentFailure: Error {
    let code: Cocoon_Agent_V4_AgentError.Code
    let message: String

    static func invalid(_ m: String) -> AgentFailure { AgentFailure(code: .invalidArgument, message: m) }
    static func notFound(_ m: String) -> AgentFailure { AgentFailure(code: .notFound, message: m) }
    static func precondition(_ m: String) -> AgentFailure { AgentFailure(code: .failedPrecondition, message: m) }
    static func `internal`(_ m: String) -> AgentFailure { AgentFailure(code: .internal, message: m) }
}
