import AgentAPI
import AgentService
import BootContract
import CAgentSys
import Glibc

/// Serves the agent protocol on the channel: one host session at a time, a fresh frame decoder
/// per session, a session served only once it sent the session marker and then the VM's token
/// (then a Hello), and only for frames that carry the session id it chose then; zombie reaping
/// between requests.
struct AgentServer {
    private let channel: AgentChannel
    private let boot: Cocoon_Agent_V4_BootReport
    /// The current session proved it is the VM's host (its first frame carried the token).
    private(set) var authenticated = false
    /// The id the host chose in its Authenticate: every later frame must carry it. A frame without
    /// it comes from another peer that took the port over unseen (virtio-serial may show no hang-up
    /// when a host drops and another connects at once): the session is closed, never handed on.
    private var sessionID: [UInt8] = []
    /// The decoder is at a frame boundary of the current session's stream; when not, bytes are
    /// skipped up to the next session marker.
    private var synced = false
    /// The next frame follows a session marker: it must be an Authenticate.
    private var awaitingAuthenticate = false
    /// When the current session started (CLOCK_BOOTTIME ns): one that has not authenticated
    /// within `authDeadlineNs` is dropped (vsock), so nobody can hold the channel without the token.
    private var sessionStartedNs: UInt64 = 0
    private static let authDeadlineNs: UInt64 = 2_000_000_000
    /// The most a session may send before it has authenticated.
    private static let preAuthBytes = 4096
    private var decoder = AgentFrameDecoder()
    private let childFD: Int32
    /// The fd of the current host session (the port itself for serial), or -1.
    private(set) var sessionFD: Int32 = -1
    private var shutdownRequested = false
    /// Set by Detach (the host is leaving) or by a refused session: nothing is served on the
    /// connection until it has really hung up.
    private(set) var detached = false
    /// Serves the requests; owns the pod's containers, forwarded ports and settings.
    private var dispatcher: AgentDispatcher<GuestContainers, GuestPorts, GuestPod>

    init(channel: AgentChannel, boot: Cocoon_Agent_V4_BootReport) {
        self.channel = channel
        self.boot = boot
        self.childFD = cocoon_sigchld_fd()
        self.dispatcher = AgentDispatcher(containers: GuestContainers(), ports: GuestPorts(), pod: GuestPod(boot: boot))
    }

    mutating func run() {
        while !shutdownRequested {
            switch channel {
            case .serial(let fd): pollSerial(fd)
            case .vsock(let listenFD), .unix(let listenFD): pollVsock(listenFD)
            }
        }
        dispatcher.containers.endPause()
    }

    // MARK: transports

    /// How long the loop waits for events: 5 ms while signals are held for a PID 1; 250 ms while a
    /// vsock session still owes its token (checked against its deadline); otherwise `idleWakeMs`.
    private var pollTimeoutMs: Int32 {
        if dispatcher.containers.holdsSignals { return 5 }
        if channel.listens, sessionFD >= 0, !authenticated { return 250 }
        return Self.idleWakeMs
    }

    /// The guest never sleeps longer than this with nothing scheduled. Under TCG (QEMU 7.2, microvm)
    /// an idle vCPU in HLT was seen to miss the wake-up for the agent channel's interrupt: QEMU had
    /// taken the host's request off its socket, the vCPU thread stayed in its halt wait, and the
    /// request was answered only when some other interrupt came, often after the host's 30 s
    /// deadline. With a timer at most this far away such an interrupt waits at most this long.
    static let idleWakeMs: Int32 = 100

    private mutating func pollSerial(_ fd: Int32) {
        var fds = [
            pollfd(fd: fd, events: Int16(POLLIN), revents: 0), pollfd(fd: childFD, events: Int16(POLLIN), revents: 0),
        ]
        let work = workFDs()
        fds += work.map(\.0)
        let rc = poll(&fds, nfds_t(fds.count), pollTimeoutMs)
        dispatcher.containers.deliverHeldSignals()
        guard rc > 0 else { return }
        serveWork(zip(fds.suffix(work.count), work.map(\.1)))
        if fds[1].revents != 0 { reapChildren() }
        let revents = Int32(fds[0].revents)
        if revents & Int32(POLLHUP) != 0 {
            // No host is connected: wait for one (reads would return EOF meanwhile).
            if sessionFD >= 0 && authenticated { log("host disconnected") }
            sessionFD = -1
            authenticated = false
            detached = false
            decoder.reset()
            usleep(20_000)
            return
        }
        if sessionFD < 0 {
            sessionFD = fd
            beginSession()
        }
        // Read even while refused or detached: the host may have changed without a hang-up the
        // guest could see, and only the session marker and an Authenticate with the token are
        // served until a session is open again.
        if revents & Int32(POLLIN) != 0 {
            if !readAvailable(fd) {
                usleep(20_000)
            }
        }
    }

    private mutating func pollVsock(_ listenFD: Int32) {
        var fds = [
            pollfd(fd: listenFD, events: Int16(POLLIN), revents: 0),
            pollfd(fd: childFD, events: Int16(POLLIN), revents: 0),
        ]
        fds.append(pollfd(fd: sessionFD, events: Int16(sessionFD >= 0 ? POLLIN : 0), revents: 0))
        let work = workFDs()
        fds += work.map(\.0)
        let rc = poll(&fds, nfds_t(fds.count), pollTimeoutMs)
        dispatcher.containers.deliverHeldSignals()
        guard rc > 0 else { return }
        serveWork(zip(fds.suffix(work.count), work.map(\.1)))
        if fds[1].revents != 0 { reapChildren() }
        if fds[0].revents != 0 {
            let conn = channel.acceptHost(listenFD)
            if conn >= 0 {
                if sessionFD >= 0, authenticated {
                    // One session at a time: a second connection is refused while one is live.
                    log("refused a second host connection while a session is live")
                    close(conn)
                } else {
                    // A connection that has not authenticated yet does not block a new one.
                    if sessionFD >= 0 { endVsockSession() }
                    sessionFD = conn
                    beginSession()
                }
            }
        }
        if fds[2].revents != 0, sessionFD >= 0 {
            if !readAvailable(sessionFD) || detached {
                endVsockSession()
            }
        }
        if sessionFD >= 0, !authenticated, cocoon_boottime_ns() - sessionStartedNs > Self.authDeadlineNs {
            log("dropped a host connection that sent no token within 2 s")
            endVsockSession()
        }
    }

    private mutating func endVsockSession() {
        close(sessionFD)
        sessionFD = -1
        authenticated = false
        detached = false
        decoder.reset()
    }

    /// A host connected: nothing is sent or served until it has sent the session marker and then
    /// the token.
    private mutating func beginSession() {
        decoder.reset()
        authenticated = false
        detached = false
        synced = false
        sessionStartedNs = cocoon_boottime_ns()
    }

    /// Reads what is there, straight into the decoder's buffer, and serves every whole frame; goes
    /// on reading while there is more (a virtio-serial read returns one 4 KiB buffer at a time), up
    /// to `readBudget` bytes before the loop serves the rest. False on EOF or a broken stream.
    private mutating func readAvailable(_ fd: Int32) -> Bool {
        var taken = 0
        while taken < Self.readBudget {
            let n = decoder.fill(atMost: 65536) { read(fd, $0.baseAddress, $0.count) }
            if n < 0 { return errno == EAGAIN || errno == EINTR }
            if n == 0 { return taken > 0 }
            taken += n
            serveBuffered()
            if synced && !authenticated && decoder.buffered > Self.preAuthBytes {
                refuse("a first frame of more than \(Self.preAuthBytes) bytes")
            }
            // A request or a refusal may have ended the session (Detach, Shutdown): on vsock, read
            // no further.
            if sessionFD < 0 || shutdownRequested { return true }
            if detached, channel.listens { return true }
        }
        return true
    }

    /// Serves the whole frames in the decoder. Out of sync (a new or refused session, a lost frame
    /// boundary), bytes are skipped up to the session marker, and the frame after it must be an
    /// Authenticate; in a session, a frame without the session's id closes it.
    private mutating func serveBuffered() {
        while true {
            if !synced {
                guard decoder.skip(past: AgentSession.marker) else { return }
                synced = true
                awaitingAuthenticate = true
            }
            let envelope: Cocoon_Agent_V4_Envelope
            do {
                guard let next = try decoder.next() else { return }
                envelope = next
            } catch {
                // Not reset: a new host's marker may be what failed to read as a length.
                if authenticated { log("lost the frame boundary (\(error)): waiting for the session marker") }
                synced = false
                continue
            }
            if awaitingAuthenticate {
                awaitingAuthenticate = false
                authenticate(envelope)
                if detached, channel.listens { return }
                continue
            }
            guard authenticated, Self.sameBytes(Array(envelope.session), sessionID) else {
                if authenticated {
                    log("closed the session: a frame without its id (another host took the channel over)")
                    refuse("a frame without the session's id", answering: envelope)
                }
                synced = false
                continue
            }
            handle(envelope)
            if sessionFD < 0 || shutdownRequested { return }
            if detached, channel.listens { return }
        }
    }

    static let readBudget = 1 << 20

    // MARK: session authentication

    /// The frame after the session marker: an Authenticate request with the VM's token opens a
    /// session (answer, Hello, then the kept events); anything else refuses the session.
    private mutating func authenticate(_ envelope: Cocoon_Agent_V4_Envelope) {
        guard case .request(let request)? = envelope.body, case .authenticate(let auth)? = request.call else {
            refuse("a first frame that is not Authenticate", answering: envelope)
            return
        }
        // Read at every session, not once at boot: a VM restored from a template resumes with the
        // template's memory, and only its own fw_cfg holds its own token.
        let token = AgentToken.read()
        guard let token, Self.sameBytes(Array(auth.token), token) else {
            refuse(token == nil ? "no token was given to this VM" : "a wrong token", answering: envelope)
            return
        }
        guard auth.session.count == AgentSession.idBytes else {
            refuse("a session id of \(auth.session.count) bytes, not \(AgentSession.idBytes)", answering: envelope)
            return
        }
        sessionID = Array(auth.session)
        authenticated = true
        detached = false
        var reply = Cocoon_Agent_V4_GuestEnvelope()
        reply.id = envelope.id
        reply.response.authenticate = Cocoon_Agent_V4_AuthenticateResponse()
        send(reply)
        startSession()
    }

    /// Ends the session's chance: answered with PERMISSION_DENIED (so a host with a stale token
    /// learns why), then nothing is served until it hangs up or is closed (vsock) or, on the serial
    /// port, until the session marker and a good Authenticate open a new session.
    private mutating func refuse(_ why: String, answering envelope: Cocoon_Agent_V4_Envelope? = nil) {
        log("refused a host session: \(why)")
        if let envelope, envelope.id != 0 {
            var error = Cocoon_Agent_V4_AgentError()
            error.code = .permissionDenied
            error.message = "session refused: \(why)"
            var reply = Cocoon_Agent_V4_GuestEnvelope()
            reply.id = envelope.id
            reply.response.error = error
            writeFrame(reply)
        }
        authenticated = false
        sessionID = []
        detached = true
        synced = false
    }

    /// Compares in time that depends only on the lengths.
    private static func sameBytes(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var diff: UInt8 = 0
        for i in a.indices { diff |= a[i] ^ b[i] }
        return diff == 0
    }

    // MARK: requests

    private mutating func handle(_ envelope: Cocoon_Agent_V4_Envelope) {
        guard case .request(let request)? = envelope.body else { return }
        Watchdog.arm("request \(envelope.id) (\(dispatcher.name(of: request)))")
        defer { Watchdog.disarm() }
        let outcome = dispatcher.serve(request, id: envelope.id)
        sendReplies(outcome.replies)
        if let response = outcome.response {
            var reply = Cocoon_Agent_V4_GuestEnvelope()
            reply.id = envelope.id
            reply.response = response
            send(reply)
        }
        for event in outcome.events { sendEvent(event) }
        switch outcome.then {
        case .carryOn:
            break
        case .powerOff:
            shutdownRequested = true
        case .detach:
            log("host detaching; keeping events for the next session")
            authenticated = false
            sessionID = []
            if channel.listens, sessionFD >= 0 {
                endVsockSession()
            } else {
                detached = true
                synced = false
            }
        }
    }

    private enum Work { case output, input, port }

    /// The fds of the containers' processes and of forwarded connections, with what to wait for.
    private func workFDs() -> [(pollfd, Work)] {
        dispatcher.containers.pipeFDs.map { (pollfd(fd: $0, events: Int16(POLLIN), revents: 0), Work.output) }
            + dispatcher.containers.blockedInputFDs.map {
                (pollfd(fd: $0, events: Int16(POLLOUT), revents: 0), Work.input)
            }
            + dispatcher.ports.pollRequests.map { ($0, Work.port) }
    }

    private mutating func serveWork<S: Sequence<(pollfd, Work)>>(_ ready: S) {
        for (p, work) in ready where p.revents != 0 {
            switch work {
            case .output:
                for event in dispatcher.containers.drain(p.fd) { sendEvent(event) }
            case .input:
                sendReplies(dispatcher.containers.flushInput(p.fd))
            case .port:
                let (replies, events) = dispatcher.ports.ready(p.fd, revents: p.revents)
                sendReplies(replies)
                for event in events { sendEvent(event) }
            }
        }
    }

    /// Events raised while no host is connected (a daemon restart), sent when the next session starts.
    var backlog: [Outgoing] = []
    var backlogBytes = 0

    private mutating func startSession() {
        dispatcher.ports.closeAll()  // the previous session's connections have no reader any more
        sendHello()
        let pending = backlog
        backlog = []
        backlogBytes = 0
        for event in pending { sendEvent(event) }
    }

    private func sendHello() {
        var hello = Cocoon_Agent_V4_Hello()
        hello.apiVersion = agentAPIVersion
        hello.agentVersion = agentVersion
        hello.boot = boot
        var event = Cocoon_Agent_V4_Event()
        event.hello = hello
        var envelope = Cocoon_Agent_V4_GuestEnvelope()
        envelope.event = event
        send(envelope)
    }

    private mutating func reapChildren() {
        cocoon_drain_signalfd(childFD)
        var status: Int32 = 0
        while true {
            let pid = waitpid(-1, &status, WNOHANG)
            guard pid > 0 else { break }
            for event in dispatcher.containers.reaped(pid: pid, status: status) { sendEvent(event) }
        }
    }
}
