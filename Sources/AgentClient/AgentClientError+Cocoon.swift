import Errors

extension CocoonError {
    /// An agent call that failed while doing `what`: the agent's refusal keeps its kind, a call past
    /// its deadline is DEADLINE_EXCEEDED, a broken channel UNAVAILABLE. The agent error is the cause.
    public static func from(_ error: AgentClientError, _ what: String) -> CocoonError {
        switch error {
        case .agent(let refusal, let message):
            let code: CocoonError.Code
            switch refusal {
            case .invalidArgument: code = .invalidArgument
            case .notFound: code = .notFound
            case .failedPrecondition: code = .failedPrecondition
            case .unimplemented: code = .unimplemented
            case .internalError, .unknown: code = .internalError
            }
            return CocoonError(code, "\(what): \(message)", cause: error)
        case .deadlineExceeded: return .deadlineExceeded("\(what): \(error)", cause: error)
        case .connectFailed, .disconnected, .protocolViolation, .sessionRefused, .notReading:
            return .unavailable("\(what): \(error)", cause: error)
        }
    }
}
