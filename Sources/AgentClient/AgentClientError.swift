/// Why an agent call failed. Every case names the VM's agent endpoint or the call.
public enum AgentClientError: Error, CustomStringConvertible, Equatable {
    /// What kind of refusal the agent answered with (its `AgentError.Code`).
    public enum Refusal: String, Sendable, Equatable {
        case invalidArgument, notFound, failedPrecondition, unimplemented, internalError, unknown
    }

    case connectFailed(String)
    /// `unread`: bytes the channel had not yet taken from the host when the deadline passed (the
    /// guest, or its VMM, was not reading), 0 when everything sent had been taken.
    case deadlineExceeded(call: String, after: Duration, unread: Int = 0)
    case disconnected(String)
    case agent(Refusal, message: String)
    case protocolViolation(String)
    /// The agent refused the session: this host did not give the VM's token (or a wrong one).
    case sessionRefused(String)
    /// The guest is not reading its channel: the host's bytes for it are at their cap.
    case notReading(String)

    public var description: String {
        switch self {
        case .connectFailed(let m): "cannot reach the guest agent: \(m)"
        case .deadlineExceeded(let call, let after, let unread):
            "guest agent did not answer \(call) within \(after)"
                + (unread > 0
                    ? " (\(unread) bytes sent to it were still waiting to be read)"
                    : " (all of it had been written to its socket)")
        case .disconnected(let m): "guest agent channel closed: \(m)"
        case .agent(let code, let message): "guest agent error \(code.rawValue): \(message)"
        case .protocolViolation(let m): "guest agent protocol violation: \(m)"
        case .sessionRefused(let m): "the guest agent refused this host's session: \(m)"
        case .notReading(let m): "the guest agent is not reading its channel: \(m)"
        }
    }
}
