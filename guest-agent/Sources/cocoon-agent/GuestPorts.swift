import AgentAPI
import AgentService
import CAgentSys
import FoundationEssentials
import Glibc

/// Port-forward connections: TCP connections from inside the pod's network namespace (the VM's) to
/// 127.0.0.1:port, relayed to and from the host by connection id. Reads are bounded by each
/// connection's window; writes wait in a `PendingWrite` until the socket takes them.
struct GuestPorts {
    static let maxConnections = 256

    struct Connection {
        var fd: Int32
        var port: UInt32
        var connecting: Bool
        /// The OpenPort request answered when the connect completes.
        var openReply: UInt64
        var window: OutputWindow
        var pending = PendingWrite()
        var readClosed = false
        var writeClosed = false
    }

    private var connections: [UInt64: Connection] = [:]

    /// Starts a connection. Answered at once when the connect fails or completes at once,
    /// otherwise when the socket becomes writable (`ready`).
    mutating func open(_ r: Cocoon_Agent_V4_OpenPortRequest, replyTo id: UInt64) throws(AgentFailure)
        -> [DeferredReply]
    {
        guard r.connectionID != 0, connections[r.connectionID] == nil else {
            throw .invalid("connection id \(r.connectionID) is zero or in use")
        }
        guard connections.count < Self.maxConnections else {
            throw .precondition("\(Self.maxConnections) port-forward connections are open already")
        }
        guard r.port > 0, r.port <= 65535 else { throw .invalid("port \(r.port) is out of range") }
        let fd = cocoon_connect_loopback(r.port)
        guard fd >= 0 else {
            throw .precondition(Self.dialError(port: r.port, errno: -fd))
        }
        let window = OutputWindow(limit: Int(min(max(r.window, 1 << 16), 16 << 20)))
        connections[r.connectionID] = Connection(fd: fd, port: r.port, connecting: true, openReply: id, window: window)
        return connected(r.connectionID)
    }

    /// Go's wording, as the kubelet's and containerd's messages carry it.
    static func dialError(port: UInt32, errno: Int32) -> String {
        let text = String(cString: strerror(errno))
        return "dial tcp 127.0.0.1:\(port): connect: \(text.prefix(1).lowercased() + text.dropFirst())"
    }

    /// A connect in progress finished (or not yet): answers its OpenPort.
    private mutating func connected(_ id: UInt64) -> [DeferredReply] {
        guard var c = connections[id], c.connecting else { return [] }
        var p = pollfd(fd: c.fd, events: Int16(POLLOUT), revents: 0)
        guard poll(&p, 1, 0) > 0 else { return [] }
        let soError = cocoon_socket_error(c.fd)
        if soError != 0 {
            Glibc.close(c.fd)
            connections[id] = nil
            return [
                DeferredReply(id: c.openReply, failure: .precondition(Self.dialError(port: c.port, errno: soError)))
            ]
        }
        c.connecting = false
        connections[id] = c
        return [DeferredReply(id: c.openReply)]
    }

    mutating func write(_ r: Cocoon_Agent_V4_WritePortRequest, replyTo id: UInt64) throws(AgentFailure)
        -> [DeferredReply]
    {
        guard let c = connections[r.connectionID] else {
            throw .notFound("connection \(r.connectionID) is not open")
        }
        guard !c.writeClosed else { throw .precondition("connection \(r.connectionID) was closed for writing") }
        // In place (`connections[id]?.`): a copy of the entry would copy the queued bytes too.
        let fd = c.connecting ? nil : c.fd
        guard
            connections[r.connectionID]?.pending.add(r.data, close: r.close, replyTo: id, writingTo: fd, socket: true)
                == true
        else {
            throw .precondition("more than \(PendingWrite.limit) bytes in flight on connection \(r.connectionID)")
        }
        if c.connecting { return [] }
        return flush(r.connectionID).replies
    }

    mutating func ack(_ r: Cocoon_Agent_V4_AckPortRequest) {
        connections[r.connectionID]?.window.acked(r.bytes)
    }

    /// Drops a connection now, both ways (the host's client went away).
    mutating func close(_ id: UInt64) -> [DeferredReply] {
        guard var c = connections.removeValue(forKey: id) else { return [] }
        Glibc.close(c.fd)
        return c.pending.abandon().map { DeferredReply(id: $0, failure: .precondition("connection closed")) }
    }

    /// What to poll: each connection's fd and the events it waits for.
    var pollRequests: [pollfd] {
        connections.values.compactMap { c in
            var events: Int32 = 0
            if c.connecting || c.pending.hasWork { events |= Int32(POLLOUT) }
            if !c.connecting && !c.readClosed && c.window.room > 0 { events |= Int32(POLLIN) }
            return events == 0 ? nil : pollfd(fd: c.fd, events: Int16(events), revents: 0)
        }
    }

    /// Serves a connection fd that poll reported.
    mutating func ready(_ fd: Int32, revents: Int16) -> (replies: [DeferredReply], events: [Outgoing]) {
        guard let id = connections.first(where: { $0.value.fd == fd })?.key, let c = connections[id] else {
            return ([], [])
        }
        if c.connecting {
            var replies = connected(id)
            if connections[id]?.connecting == false { replies += flush(id).replies }
            return (replies, [])
        }
        var replies: [DeferredReply] = []
        var events: [Outgoing] = []
        if revents & Int16(POLLOUT) != 0 {
            let result = flush(id)
            replies += result.replies
            events += result.events
        }
        if revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 {
            let result = read(id)
            replies += result.replies
            events += result.events
        }
        return (replies, events)
    }

    private mutating func flush(_ id: UInt64) -> (replies: [DeferredReply], events: [Outgoing]) {
        guard let fd = connections[id]?.fd, let progress = connections[id]?.pending.flush(fd, socket: true) else {
            return ([], [])
        }
        switch progress {
        case .blocked:
            return ([], [])
        case .done(let waiters, let closeNow):
            if closeNow {
                shutdown(fd, Int32(SHUT_WR))
                connections[id]?.writeClosed = true
                finishIfDone(id)
            }
            return (waiters.map { DeferredReply(id: $0) }, [])
        case .failed(let error):
            let replies = close(id).map { DeferredReply(id: $0.id, failure: .precondition("\(error)")) }
            return (replies, [.event(closed(id, error: "\(error)"))])
        }
    }

    private mutating func read(_ id: UInt64) -> (replies: [DeferredReply], events: [Outgoing]) {
        guard let c = connections[id] else { return ([], []) }
        let (frame, n) = StreamFrame.read(.portData(connectionID: id), atMost: min(c.window.room, 65536)) {
            Glibc.read(c.fd, $0.baseAddress, $0.count)
        }
        if let frame {
            connections[id]?.window.sent(n)
            return ([], [.stream(frame)])
        }
        if n < 0 && (errno == EAGAIN || errno == EINTR) { return ([], []) }
        let error = n < 0 ? "\(SystemError("read"))" : ""
        connections[id]?.readClosed = true
        var replies: [DeferredReply] = []
        if !error.isEmpty {
            replies = close(id).map { DeferredReply(id: $0.id, failure: .precondition(error)) }
        } else {
            finishIfDone(id)
        }
        return (replies, [.event(closed(id, error: error))])
    }

    /// Both directions ended: the connection is closed and forgotten.
    private mutating func finishIfDone(_ id: UInt64) {
        guard let c = connections[id], c.readClosed, c.writeClosed else { return }
        Glibc.close(c.fd)
        connections[id] = nil
    }

    private func closed(_ id: UInt64, error: String) -> Cocoon_Agent_V4_Event {
        var closed = Cocoon_Agent_V4_PortClosed()
        closed.connectionID = id
        closed.error = error
        var event = Cocoon_Agent_V4_Event()
        event.portClosed = closed
        return event
    }

    /// A new host session: the old one's connections have no reader any more.
    mutating func closeAll() {
        for id in Array(connections.keys) { _ = close(id) }
    }
}
