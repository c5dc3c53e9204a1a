import ContainerLogs

/// The ExecSync commands in flight: output collected up to a bound, the exit code, and the caller
/// waiting for it. Owned (and only touched) by the container manager's actor.
struct ExecSessions {
    static let maxOutput = 16 << 20

    final class Session {
        let containerID: String
        var stdout: [UInt8] = []
        var stderr: [UInt8] = []
        var exitCode: Int32?
        /// Why the exec can no longer end (its pod's agent is gone), when so.
        var lost: String?
        var waiter: CheckedContinuation<Void, Never>?
        init(containerID: String) { self.containerID = containerID }
    }

    private var sessions: [String: Session] = [:]

    mutating func open(_ execID: String, container: String) -> Session {
        let session = Session(containerID: container)
        sessions[execID] = session
        return session
    }

    func session(_ execID: String) -> Session? { sessions[execID] }

    mutating func close(_ execID: String) {
        sessions[execID] = nil
    }

    /// Output of an exec of `container`; dropped when the id is unknown or belongs to another container.
    func output(_ execID: String, container: String, stream: CRILog.Stream, _ data: [UInt8]) {
        guard let s = sessions[execID], s.containerID == container else { return }
        switch stream {
        case .stderr where s.stderr.count < Self.maxOutput: s.stderr += data.prefix(Self.maxOutput - s.stderr.count)
        case .stdout where s.stdout.count < Self.maxOutput: s.stdout += data.prefix(Self.maxOutput - s.stdout.count)
        default: break
        }
    }

    func exited(_ execID: String, container: String, code: Int32) {
        guard let s = sessions[execID], s.containerID == container, s.exitCode == nil else { return }
        s.exitCode = code
        wake(execID)
    }

    /// The agent of these containers' pod went away: their execs will never report an exit.
    func podLost(containers: Set<String>, reason: String) {
        for (execID, s) in sessions where containers.contains(s.containerID) && s.exitCode == nil {
            s.lost = reason
            wake(execID)
        }
    }

    func wake(_ execID: String) {
        guard let session = sessions[execID], let waiter = session.waiter else { return }
        session.waiter = nil
        waiter.resume()
    }
}
