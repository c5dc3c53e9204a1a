import AgentAPI

/// A request the agent refuses, carried back to the host as an `AgentError` with its code.
public struct AgentFailure: Error {
    public let code: Cocoon_Agent_V4_AgentError.Code
    public let message: String

    public init(code: Cocoon_Agent_V4_AgentError.Code, message: String) {
        self.code = code
        self.message = message
    }

    public static func invalid(_ m: String) -> AgentFailure { AgentFailure(code: .invalidArgument, message: m) }
    public static func notFound(_ m: String) -> AgentFailure { AgentFailure(code: .notFound, message: m) }
    public static func precondition(_ m: String) -> AgentFailure { AgentFailure(code: .failedPrecondition, message: m) }
    public static func `internal`(_ m: String) -> AgentFailure { AgentFailure(code: .internal, message: m) }
}
