import ContainerLogs
import Logging
import Models
import Synchronization

/// Where the agents' stream events go: each streaming exec, each attach, each forwarded connection
/// has a continuation here, keyed by the ids the host chose and checked against the pod the event
/// came from. Thread-safe (events arrive on the container manager's actor, sessions end anywhere).
///
/// The guest is untrusted: an exec or port route counts the bytes it holds that its client has not
/// taken yet, and a guest that sends more than the window it was given (plus one read's worth) has
/// its stream cut, so a slow client never lets a guest grow the daemon's memory.
final class StreamRoutes: Sendable {
    private struct ExecRoute: Metered {
        var podID: String
        var containerID: String
        var continuation: AsyncStream<ProcessStreamEvent>.Continuation
        var unacknowledged = 0
    }
    /// An attach session: the container's output is not windowed in the guest (its log takes it
    /// at the pace the log is written), so the route bounds what it holds for a slow client.
    private struct AttachRoute {
        var continuation: AsyncStream<ProcessStreamEvent>.Continuation
        var held = 0
        var dropped = 0
    }
    private struct PortRoute: Metered {
        var podID: String
        var continuation: AsyncStream<PortStreamEvent>.Continuation
        var unacknowledged = 0
    }
    /// The most a route may hold: the window the agent was given plus one of its reads.
    let limit: Int
    private struct State {
        var execs: [String: ExecRoute] = [:]
        var attaches: [String: [UInt64: AttachRoute]] = [:]
        var ports: [UInt64: PortRoute] = [:]
        var nextAttach: UInt64 = 1
    }
    private let state = Mutex(State())

    let logger: Logger

    init(window: Int, chunk: Int = 64 << 10, logger: Logger = Logger(label: "cocoon.streams")) {
        limit = window + chunk
        self.logger = logger
    }

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
        let outcome = state.withLock { s in
            // Another pod's (or container's) claim on the exec is a lie: dropped.
            admit(&s.execs, execID, data.count) { $0.podID == pod && $0.containerID == container }
        }
        switch outcome {
        case .unknown: return false
        case .dropped: break
        case .accepted(let route): route.continuation.yield(stream == .stderr ? .stderr(data) : .stdout(data))
        case .overflow(let route):
            logger.warning(
                "exec stream cut: the guest overran its window", metadata: ["pod": "\(pod)", "exec": "\(execID)"])
            route.continuation.yield(.failed("the pod's agent sent more output than its window of \(limit) bytes"))
            route.continuation.finish()
        }
        return true
    }

    /// Counts `count` more bytes held for the route at `key`, if `owned` says the sender may use it;
    /// a route over `limit` is removed.
    private func admit<Key: Hashable, Route: Metered>(
        _ routes: inout [Key: Route], _ key: Key, _ count: Int, owned: (Route) -> Bool
    ) -> Admission<Route> {
        guard var route = routes[key] else { return .unknown }
        guard owned(route) else { return .dropped }
        route.unacknowledged += count
        if route.unacknowledged > limit {
            routes.removeValue(forKey: key)
            return .overflow(route)
        }
        routes[key] = route
        return .accepted(route)
    }

    /// The exec's client took `bytes` of its output.
    func execDelivered(_ execID: String, _ bytes: Int) {
        state.withLock { s in s.execs[execID]?.unacknowledged -= bytes }
    }

    func execExited(_ execID: String, pod: String, container: String, code: Int32) -> Bool {
        guard let route = state.withLock({ $0.execs[execID] }) else { return false }
        guard route.podID == pod, route.containerID == container else { return true }
        route.continuation.yield(.exit(code))
        route.continuation.finish()
        return true
    }

    func addAttach(_ containerID: String) -> (id: UInt64, events: AsyncStream<ProcessStreamEvent>) {
        let (stream, continuation) = AsyncStream<ProcessStreamEvent>.makeStream()
        let id = state.withLock { s in
            let id = s.nextAttach
            s.nextAttach += 1
            s.attaches[containerID, default: [:]][id] = AttachRoute(continuation: continuation)
            return id
        }
        return (id, stream)
    }

    func removeAttach(_ containerID: String, id: UInt64) {
        state.withLock { $0.attaches[containerID]?.removeValue(forKey: id) }?.continuation.finish()
    }

    /// The attach session's client took `bytes` of the output.
    func attachDelivered(_ containerID: String, id: UInt64, _ bytes: Int) {
        state.withLock { s in s.attaches[containerID]?[id]?.held -= bytes }
    }

    /// A container's own output, to every attach session (the log has it already). A session whose
    /// client has more than `limit` bytes untaken misses what comes meanwhile (as conmon drops
    /// output for an attach socket that is full): a container that writes faster than a client
    /// reads never makes the daemon hold more than `limit` bytes for that client.
    func attachOutput(_ containerID: String, stream: CRILog.Stream, _ data: [UInt8]) {
        let (open, firstDrops) = state.withLock { s in
            var open: [AsyncStream<ProcessStreamEvent>.Continuation] = []
            var firstDrops = 0
            for (id, var route) in s.attaches[containerID] ?? [:] {
                if route.held + data.count > limit {
                    if route.dropped == 0 { firstDrops += 1 }
                    route.dropped += data.count
                } else {
                    route.held += data.count
                    open.append(route.continuation)
                }
                s.attaches[containerID]?[id] = route
            }
            return (open, firstDrops)
        }
        for continuation in open { continuation.yield(stream == .stderr ? .stderr(data) : .stdout(data)) }
        if firstDrops > 0 {
            logger.warning(
                "attach client behind by more than the window: output dropped for it (the log has all)",
                metadata: ["container": "\(containerID)", "window": "\(limit)"])
        }
    }

    /// Bytes held for and dropped from one attach session (tests).
    func attachBacklog(_ containerID: String, id: UInt64) -> (held: Int, dropped: Int)? {
        state.withLock { s in s.attaches[containerID]?[id].map { ($0.held, $0.dropped) } }
    }

    /// The container exited (or its pod ended): its attach sessions and execs end with it.
    func containerEnded(_ containerID: String, code: Int32) {
        let (attached, execs) = state.withLock { s in
            let attached = s.attaches.removeValue(forKey: containerID)?.values.map(\.continuation) ?? []
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

    /// The pod's agent is gone (the pod stopped or its VM died): every stream of the pod ends.
    func podEnded(_ podID: String, containers: [String], reason: String) {
        let (processes, ports) = state.withLock { s in
            var processes: [AsyncStream<ProcessStreamEvent>.Continuation] = []
            for id in containers { processes += s.attaches.removeValue(forKey: id)?.values.map(\.continuation) ?? [] }
            for (id, route) in s.execs where route.podID == podID {
                s.execs.removeValue(forKey: id)
                processes.append(route.continuation)
            }
            var ports: [AsyncStream<PortStreamEvent>.Continuation] = []
            for (id, route) in s.ports where route.podID == podID {
                s.ports.removeValue(forKey: id)
                ports.append(route.continuation)
            }
            return (processes, ports)
        }
        for continuation in processes {
            continuation.yield(.failed(reason))
            continuation.finish()
        }
        for continuation in ports {
            continuation.yield(.closed(error: reason))
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

    /// False when the connection was cut because the guest overran its window.
    @discardableResult
    func portData(_ connection: UInt64, pod: String, _ data: [UInt8]) -> Bool {
        let outcome = state.withLock { s in admit(&s.ports, connection, data.count) { $0.podID == pod } }
        switch outcome {
        case .unknown, .dropped: return true
        case .accepted(let route):
            route.continuation.yield(.data(data))
            return true
        case .overflow(let route):
            logger.warning("port-forward connection cut: the guest overran its window", metadata: ["pod": "\(pod)"])
            route.continuation.yield(.closed(error: "the pod's agent sent more data than its window of \(limit) bytes"))
            route.continuation.finish()
            return false
        }
    }

    /// The connection's client took `bytes` of the pod's data.
    func portDelivered(_ connection: UInt64, _ bytes: Int) {
        state.withLock { s in s.ports[connection]?.unacknowledged -= bytes }
    }

    func portClosed(_ connection: UInt64, pod: String, error: String) {
        guard let route = state.withLock({ $0.ports[connection] }), route.podID == pod else { return }
        route.continuation.yield(.closed(error: error))
        route.continuation.finish()
    }
}

/// What became of one chunk from a guest.
private enum Admission<Route> {
    case unknown
    case dropped
    case accepted(Route)
    case overflow(Route)
}

/// A route that counts the bytes it holds for its client.
private protocol Metered {
    var unacknowledged: Int { get set }
}
