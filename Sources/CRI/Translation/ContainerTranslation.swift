import CRIAPI
import Containers
import Foundation
import Sandboxes

/// Container records to and from CRI v1 messages.
enum ContainerTranslation {
    static func state(_ s: ContainerRecord.State) -> Runtime_V1_ContainerState {
        switch s {
        case .created: .containerCreated
        case .running: .containerRunning
        case .exited: .containerExited
        }
    }

    static func container(_ r: ContainerRecord) -> Runtime_V1_Container {
        var c = Runtime_V1_Container()
        c.id = r.id
        c.podSandboxID = r.sandboxID
        c.metadata = .with {
            $0.name = r.name
            $0.attempt = r.attempt
        }
        c.image = .with { $0.image = r.image }
        c.imageRef = r.imageRef ?? r.imageID
        c.imageID = r.imageID
        c.state = state(r.state)
        c.createdAt = r.createdAtNs
        c.labels = r.labels
        c.annotations = r.annotations
        return c
    }

    static func status(_ r: ContainerRecord) -> Runtime_V1_ContainerStatus {
        var s = Runtime_V1_ContainerStatus()
        s.id = r.id
        s.metadata = .with {
            $0.name = r.name
            $0.attempt = r.attempt
        }
        s.state = state(r.state)
        s.createdAt = r.createdAtNs
        s.startedAt = r.startedAtNs ?? 0
        s.finishedAt = r.finishedAtNs ?? 0
        s.exitCode = r.exitCode ?? 0
        s.image = .with { $0.image = r.image }
        s.imageRef = r.imageRef ?? r.imageID
        s.imageID = r.imageID
        s.reason = r.reason ?? ""
        s.message = r.message ?? ""
        s.labels = r.labels
        s.annotations = r.annotations
        s.logPath = r.logPath
        s.mounts = r.mounts.map { m in
            .with {
                $0.containerPath = m.containerPath
                $0.hostPath = m.hostPath
                $0.readonly = m.readOnly
                $0.recursiveReadOnly = m.recursiveReadOnly ?? false
                // As it was asked and applied (bidirectional is refused at creation).
                switch m.propagation ?? .private {
                case .private: $0.propagation = .propagationPrivate
                case .hostToContainer: $0.propagation = .propagationHostToContainer
                }
            }
        }
        return s
    }

    static func matches(_ r: ContainerRecord, _ f: Runtime_V1_ContainerFilter) -> Bool {
        if !f.id.isEmpty && !r.id.hasPrefix(f.id) { return false }
        if f.hasState && state(r.state) != f.state.state { return false }
        if !f.podSandboxID.isEmpty && !r.sandboxID.hasPrefix(f.podSandboxID) { return false }
        for (k, v) in f.labelSelector where r.labels[k] != v { return false }
        return true
    }

    /// "SIGQUIT", "QUIT", "3" → 3; unknown or empty → SIGTERM.
    static func signalNumber(_ name: String?) -> Int32 {
        guard var text = name?.uppercased(), !text.isEmpty else { return SIGTERM }
        if let n = Int32(text), n > 0, n < 65 { return n }
        if text.hasPrefix("SIG") { text.removeFirst(3) }
        let table: [String: Int32] = [
            "HUP": SIGHUP, "INT": SIGINT, "QUIT": SIGQUIT, "KILL": SIGKILL, "USR1": SIGUSR1, "USR2": SIGUSR2,
            "TERM": SIGTERM, "STOP": SIGSTOP, "WINCH": SIGWINCH, "PWR": SIGPWR,
        ]
        return table[text] ?? SIGTERM
    }
}
