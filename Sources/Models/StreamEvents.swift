/// What a streaming exec or attach receives from its process.
public enum ProcessStreamEvent: Sendable, Equatable {
    case stdout([UInt8])
    case stderr([UInt8])
    /// The process ended; nothing follows.
    case exit(Int32)
    /// The session was cut (the guest broke the stream's rules); nothing follows.
    case failed(String)
}

/// What a port-forward connection receives from the pod's side.
public enum PortStreamEvent: Sendable, Equatable {
    case data([UInt8])
    /// The pod's side ended: `error` empty for EOF; nothing follows.
    case closed(error: String)
}
