import Synchronization

/// What a streaming exec or attach receives from its process.
public enum ProcessStreamEvent: Sendable, Equatable {
    case stdout([UInt8])
    case stderr([UInt8])
    /// The process ended; nothing follows.
    case exit(Int32)
}

/// What a port-forward connection receives from the pod's side.
public enum PortStreamEvent: Sendable, Equatable {
    case data([UInt8])
    /// The pod's side ended: `error` empty for EOF; nothing follows.
    case closed(error: String)
}

/// Where the agents' stream events go: each streaming exec, each attach, each forwarded connection
/// has a continuation here, keyed by the ids the host chose and checked against the pod the event
/// came from. Thread-safe (events arrive on the container manager's actor, sessions end anywhere).
final class StreamRoutes: Sendable {
    private struct ExecRoute {
        var podID: String
        var containerID: String
        var continuation: AsyncStream<ProcessStreamEvent>.Continuation
    }
    private struct PortRoute {
        var podID: String
        var continuation: AsyncStream<PortStreamEvent>.Continuation
    }
    private struct State {
        var execs: [String: ExecRoute] = [:]
        var attaches: [String: [UInt64: AsyncStream<ProcessStreamEvent>.Continuation]] = [:]
        var ports: [UInt64: PortRoute] = [:]
        var nextAttach: UInt64 = 1
    }
    private let state = Mutex(State())

    func addExec(_ execID: String, pod: String, container: String) -> AsyncStream<ProcessStreamEvent> {
        let (stream, continuation) = AsyncStream<ProcessStreamEvent>.makeStream()
        state.withLock { $0.execs[execID] = ExecRoute(podID: pod, containerID: container, continuation: continuation) }
        return stream
    }

    func removeExec(_ execID: String) {
        state.withLock { $0.execs.removeValue(forKey: execID) }?.continuation.finish()
    }

    /// False when no streaming exec has this id (an ExecSync's output).
    func execOutput(_ execID: String, pod: String, container: String, stream: CRILog.Stream, _ data: [UInt8]) -> Bool {
        guard let route = state.withLock({ $0.execs[execID] }) else { return false }
        guard route.podID == pod, route.containerID == container else { return true }  // another pod's lie: dropped
        route.continuation.yield(stream == .stderr ? .stderr(data) : .stdout(data))
        return true
    }

    func execExited(_ execID: String, pod: String, container: String, code: Int32) -> Bool {
        guard let route = state.withLock({ $0.execs[execID] }) else { return false }
        guard route.podID == pod, route.containerID == container else { return true }
        route.continuation.yield(.exit(code))
        route.continuation.finish()
        return true
    }

    func addAttach(_ containerID: String) -> (id: UInt64, events: AsyncStream<ProcessStreamEvent>) {
        let (stream, continuation) = AsyncStream<ProcessStreamEvent>.makeStream(bufferingPolicy: .bufferingNewest(256))
        let id = state.withLock { s in
            let id = s.nextAttach
            s.nextAttach += 1
            s.attaches[containerID, default: [:]][id] = continuation
            return id
        }
        return (id, stream)
    }

    func removeAttach(_ containerID: String, id: UInt64) {
        state.withLock { $0.attaches[containerID]?.removeValue(forKey: id) }?.finish()
    }

    /// A container's own output, to every attach session (the log has it already).
    func attachOutput(_ containerID: String, stream: CRILog.Stream, _ data: [UInt8]) {
        for continuation in state.withLock({ $0.attaches[containerID]?.values.map { $0 } ?? [] }) {
            continuation.yield(stream == .stderr ? .stderr(data) : .stdout(data))
        }
    }

    /// The container exited (or its pod ended): its attach sessions and execs end with it.
    func containerEnded(_ containerID: String, code: Int32) {
        let (attached, execs) = state.withLock { s in
            let attached = s.attaches.removeValue(forKey: containerID)?.values.map { $0 } ?? []
            let execIDs = s.execs.filter { $0.value.containerID == containerID }.map(\.key)
            let execs = execIDs.compactMap { s.execs.removeValue(forKey: $0)?.continuation }
            return (attached, execs)
        }
        for continuation in attached {
            continuation.yield(.exit(code))
            continuation.finish()
        }
        for continuation in execs {
            continuation.yield(.exit(137))
            continuation.finish()
        }
    }

    func addPort(_ connection: UInt64, pod: String) -> AsyncStream<PortStreamEvent> {
        let (stream, continuation) = AsyncStream<PortStreamEvent>.makeStream()
        state.withLock { $0.ports[connection] = PortRoute(podID: pod, continuation: continuation) }
        return stream
    }

    func removePort(_ connection: UInt64) {
        state.withLock { $0.ports.removeValue(forKey: connection) }?.continuation.finish()
    }

    func portData(_ connection: UInt64, pod: String, _ data: [UInt8]) {
        guard let route = state.withLock({ $0.ports[connection] }), route.podID == pod else { return }
        route.continuation.yield(.data(data))
    }

    func portClosed(_ connection: UInt64, pod: String, error: String) {
        guard let route = state.withLock({ $0.ports[connection] }), route.podID == pod else { return }
        route.continuation.yield(.closed(error: error))
        route.continuation.finish()
    }
}
