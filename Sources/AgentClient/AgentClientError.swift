/// Why an agent call failed. Every case names the VM's agent endpoint or the call.
public enum AgentClientError: Error, CustomStringConvertible, Equatable {
    case connectFailed(String)
    case deadlineExceeded(call: String, after: Duration)
    case disconnected(String)
    case agent(code: String, message: String)
    case protocolViolation(String)

    public var description: String {
        switch self {
        case .connectFailed(let m): "cannot reach the guest agent: \(m)"
        case .deadlineExceeded(let call, let after): "guest agent did not answer \(call) within \(after)"
        case .disconnected(let m): "guest agent channel closed: \(m)"
        case .agent(let code, let message): "guest agent error \(code): \(message)"
        case .protocolViolation(let m): "guest agent protocol violation: \(m)"
        }
    }
}
