import AgentAPI
import AgentService
import Glibc

/// What the agent sends the host: replies, events (kept in the backlog while no host session is
/// open) and whole frames.
extension AgentServer {
    /// Answers requests whose work finished after they arrived (writes that waited for room).
    func sendReplies(_ replies: [DeferredReply]) {
        for reply in replies where reply.id != 0 {
            var envelope = Cocoon_Agent_V4_GuestEnvelope()
            envelope.id = reply.id
            envelope.response = reply.failure.map(Cocoon_Agent_V4_Response.failure) ?? Cocoon_Agent_V4_Response()
            send(envelope)
        }
    }

    /// The most bytes of output the backlog keeps.
    static let backlogLimit = 4 << 20

    /// Sends an event, or keeps it for the next session.
    mutating func sendEvent(_ event: Cocoon_Agent_V4_Event) { sendEvent(.event(event)) }

    /// Sends an event or output frame on the open session; with none, keeps it in the backlog (not
    /// a forwarded port's, which ends with its session).
    mutating func sendEvent(_ outgoing: Outgoing) {
        guard sessionFD >= 0, authenticated, !detached else {
            // A forwarded connection lives and dies with its host session.
            switch outgoing {
            case .event(let event):
                if case .portClosed? = event.kind { return }
            case .stream(let frame):
                if case .portData = frame.header { return }
            }
            backlog.append(outgoing)
            backlogBytes += outgoing.outputBytes
            // Over the limit, the oldest output goes first; exits are always kept.
            while backlogBytes > Self.backlogLimit, let i = backlog.firstIndex(where: { $0.outputBytes > 0 }) {
                backlogBytes -= backlog[i].outputBytes
                backlog.remove(at: i)
            }
            return
        }
        switch outgoing {
        case .event(let event):
            var envelope = Cocoon_Agent_V4_GuestEnvelope()
            envelope.event = event
            send(envelope)
        case .stream(let frame):
            frame.withBytes { write($0) }
        }
    }

    /// Sends on an authenticated session only.
    func send(_ envelope: Cocoon_Agent_V4_GuestEnvelope) {
        guard authenticated else { return }
        writeFrame(envelope)
    }

    /// Frames and writes an envelope on the current connection, authenticated or not (a refusal).
    func writeFrame(_ envelope: Cocoon_Agent_V4_GuestEnvelope) {
        // try?: an event too large to frame is dropped, never the session
        guard sessionFD >= 0, let bytes = try? AgentFrame.encode(envelope) else { return }
        bytes.withUnsafeBytes { write($0) }
    }

    /// Writes one whole frame to the host. A host that does not read yet is behind on this pod's
    /// output and holds back on purpose: wait for it, however long (dropping the rest of a frame
    /// would garble every frame after it); only its hang-up ends the wait.
    func write(_ bytes: UnsafeRawBufferPointer) {
        guard sessionFD >= 0, let base = bytes.baseAddress else { return }
        var offset = 0
        var waited = false
        defer { if waited { Watchdog.endNote() } }
        while offset < bytes.count {
            let n = Glibc.write(sessionFD, base + offset, bytes.count - offset)
            if n > 0 {
                offset += n
            } else if n < 0 && (errno == EAGAIN || errno == EINTR) {
                if !waited { Watchdog.note("waiting for the host to read a frame of \(bytes.count) bytes") }
                waited = true
                var p = pollfd(fd: sessionFD, events: Int16(POLLOUT), revents: 0)
                let ready = poll(&p, 1, 1000)
                if ready < 0 && errno != EINTR || p.revents & Int16(POLLHUP | POLLERR) != 0 {
                    log("host gone while it was sent a frame")
                    return
                }
            } else {
                log("write to host: \(SystemError("write"))")
                return
            }
        }
    }
}
