import AgentAPI
import Foundation
import Synchronization
import Testing

@testable import AgentClient

/// The host's end of the agent channel against a guest that floods it: a test plays the guest's
/// side on a real socket (as QEMU's virtio-serial socket would carry it) and writes output events
/// as fast as the socket takes them, while the host's consumer does not keep up.
@Suite struct EvilAgentTests {
    /// A guest agent that only floods: accepts the host, then writes 64 KiB output events without
    /// end, counting what the socket took.
    final class FloodingGuest: Sendable {
        let path: String
        private let listener: Int32
        /// Bytes the guest wrote (flooding) or read (reading).
        let written = Atomic<Int>(0)
        let stop = Atomic<Bool>(false)

        init() throws {
            path = NSTemporaryDirectory() + "evil-\(UUID().uuidString.prefix(8)).sock"
            listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            var addr = sockaddr_un()
            addr.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &addr.sun_path) { raw in
                for (i, b) in path.utf8.enumerated() where i < raw.count - 1 { raw[i] = b }
            }
            let bound = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(listener, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                }
            }
            guard bound == 0, listen(listener, 1) == 0 else { throw POSIXError(.EADDRINUSE) }
        }

        /// Accepts the host's one connection on a thread of its own and plays `body` on it; the
        /// connection is closed when `body` returns.
        private func serveOne(_ body: @escaping @Sendable (Int32) -> Void) {
            Thread.detachNewThread { [self] in
                let fd = accept(listener, nil, nil)
                guard fd >= 0 else { return }
                defer { close(fd) }
                body(fd)
            }
        }

        func run() {
            serveOne { [self] fd in
                _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
                var event = Cocoon_Agent_V4_Envelope()
                event.event.output = .with {
                    $0.containerID = "c1"
                    $0.data = Data(repeating: 0x79, count: 64 << 10)
                }
                guard let frame = try? AgentFrame.encode(event) else { return }
                var offset = 0
                while !stop.load(ordering: .relaxed) {
                    let n = frame.withUnsafeBytes { send(fd, $0.baseAddress! + offset, frame.count - offset, 0) }
                    if n > 0 {
                        written.add(n, ordering: .relaxed)
                        offset = (offset + n) % frame.count
                    } else {
                        usleep(1000)  // sleep: the host does not read: wait, as a guest's write would
                    }
                }
            }
        }

        /// Plays a guest that sends one output event carrying `bytes` bytes, then stays.
        func runSendingOne(_ bytes: Int, containerID: String = "c1") {
            var event = Cocoon_Agent_V4_Envelope()
            event.event.output = .with {
                $0.containerID = containerID
                $0.data = Data(repeating: 0x79, count: bytes)
            }
            runSending(event)
        }

        /// Plays a guest that sends one frame of its own making (any field of the host's envelope).
        func runSending(_ envelope: Cocoon_Agent_V4_Envelope) {
            serveOne { [self] fd in
                guard let frame = try? AgentFrame.encode(envelope) else { return }
                var offset = 0
                while offset < frame.count, !stop.load(ordering: .relaxed) {
                    let n = frame.withUnsafeBytes { send(fd, $0.baseAddress! + offset, frame.count - offset, 0) }
                    if n <= 0 { return }
                    offset += n
                }
                // sleep: the guest stays, idle, until the test ends
                while !stop.load(ordering: .relaxed) { usleep(10_000) }
            }
        }

        /// Plays a guest that accepts the host and never reads (a VM whose QEMU stopped).
        func runDeaf() {
            serveOne { [self] fd in
                // sleep: a guest that never reads, until the test ends
                while !stop.load(ordering: .relaxed) { usleep(10_000) }
            }
        }

        /// Plays a guest that only reads, counting the bytes the host sent in `written`.
        func runReading() {
            serveOne { [self] fd in
                var buffer = [UInt8](repeating: 0, count: 65536)
                while !stop.load(ordering: .relaxed) {
                    let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                    if n <= 0 { return }
                    written.add(n, ordering: .relaxed)
                }
            }
        }

        /// Plays a guest that reads the host's first frame (kept in `firstFrame`), answers it with
        /// PERMISSION_DENIED as an agent does for a wrong token, and then serves nothing.
        func runRefusing() {
            serveOne { [self] fd in
                var decoder = AgentFrameDecoder()
                var buffer = [UInt8](repeating: 0, count: 4096)
                var head: [UInt8] = []
                var synced = false
                while !stop.load(ordering: .relaxed) {
                    let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                    if n <= 0 { return }
                    head += buffer[0..<n].prefix(AgentSession.marker.count - head.count)
                    decoder.append(buffer[0..<n])
                    if !synced { synced = decoder.skip(past: AgentSession.marker) }
                    guard synced, let envelope = try? decoder.next() else { continue }
                    firstFrame.withLock { $0 = envelope }
                    startedWithMarker.withLock { $0 = head == AgentSession.marker }
                    var reply = Cocoon_Agent_V4_Envelope()
                    reply.id = envelope.id
                    reply.response.error.code = .permissionDenied
                    reply.response.error.message = "session refused: a wrong token"
                    guard let bytes = try? AgentFrame.encode(reply) else { return }
                    _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
                    while !stop.load(ordering: .relaxed), recv(fd, &buffer, buffer.count, 0) > 0 {}
                    return
                }
            }
        }
        let firstFrame = Mutex<Cocoon_Agent_V4_Envelope?>(nil)
        let startedWithMarker = Mutex(false)

        deinit {
            close(listener)
            unlink(path)
        }
    }

    @Test func aFloodingGuestIsHeldBackWhileTheHostIsBehind() async throws {
        let guest = try FloodingGuest()
        guest.run()
        defer { guest.stop.store(true, ordering: .relaxed) }
        let credit = EventCredit(limit: 1 << 20)
        let (events, input) = AsyncStream.makeStream(of: AgentEvent.self)
        let client = try await AgentClient.connect(.serial(path: guest.path), token: Self.token, credit: credit) {
            input.yield($0)
        }
        // Nobody consumes: the host reads the limit's worth, then stops; the guest is held back
        // by its socket (without the credit the host would read everything, without bound).
        // sleep: time for the host to read up to the limit and the socket to fill (no signal for that)
        try await Task.sleep(for: .seconds(2))
        let held = guest.written.load(ordering: .relaxed)
        #expect(credit.outstanding > 1 << 20 && credit.outstanding < 2 << 20, "\(credit.outstanding)")
        // sleep: the guest may write nothing more within this window
        try await Task.sleep(for: .milliseconds(500))
        #expect(guest.written.load(ordering: .relaxed) == held, "the guest went on writing: \(held)")
        #expect(held < 16 << 20, "the host took \(held) bytes from a guest it could not keep up with")
        // The consumer catches up: the host reads on.
        var handled = 0
        for await event in events {
            credit.release(EventCredit.cost(event))
            handled += 1
            if handled == 64 { break }
        }
        #expect(await eventually { guest.written.load(ordering: .relaxed) > held }, "the host reads on")
        await client.close()
    }

    static let token = [UInt8](repeating: 7, count: 32)

    /// A guest frame is at most 1 MiB (the host holds no more of a pod's bytes before it decodes
    /// them; a guest's largest real frame is a 64 KiB chunk of output): a larger one ends the
    /// channel undecoded, while one just under the limit is delivered.
    @Test(arguments: [(1 << 20) - 64, 2 << 20])
    func aGuestFrameOverOneMiBEndsTheChannel(bytes: Int) async throws {
        let guest = try FloodingGuest()
        guest.runSendingOne(bytes)
        defer { guest.stop.store(true, ordering: .relaxed) }
        let (open, delivered) = try await Self.firstOutput(from: guest)
        if bytes > AgentFrame.maxGuestFrameSize {
            #expect(!open && delivered == 0, "a \(bytes)-byte frame was taken")
        } else {
            #expect(open && delivered == bytes)
        }
    }

    /// Connects to the fake guest and waits (3 s at most) for the channel to close or output to
    /// arrive: whether the channel is still open, and how many output bytes were delivered.
    static func firstOutput(from guest: FloodingGuest) async throws -> (open: Bool, delivered: Int) {
        let delivered = Atomic<Int>(0)
        let client = try await AgentClient.connect(.serial(path: guest.path), token: Self.token) { event in
            if case .output(_, _, _, let data) = event { delivered.add(data.count, ordering: .relaxed) }
        }
        for _ in 0..<150 where client.isOpen && delivered.load(ordering: .relaxed) == 0 {
            // sleep: a poll pause; the loop checks the condition
            try await Task.sleep(for: .milliseconds(20))
        }
        let result = (client.isOpen, delivered.load(ordering: .relaxed))
        await client.close()
        return result
    }

    /// A guest frame is a `GuestEnvelope`: a request (what only the host sends) or a session id in
    /// it is a frame no honest guest sends, and ends the channel before anything in it is used.
    @Test(arguments: ["request", "session", "output"])
    func aGuestFrameWithHostFieldsEndsTheChannel(kind: String) async throws {
        var envelope = Cocoon_Agent_V4_Envelope()
        envelope.event.output = .with {
            $0.containerID = "c1"
            $0.data = Data("seen".utf8)
        }
        if kind == "request" { envelope.request.exec = .with { $0.containerID = String(repeating: "x", count: 4096) } }
        if kind == "session" { envelope.session = Data(repeating: 7, count: 16) }
        let guest = try FloodingGuest()
        guest.runSending(envelope)
        defer { guest.stop.store(true, ordering: .relaxed) }
        let (open, delivered) = try await Self.firstOutput(from: guest)
        if kind == "output" {
            #expect(open && delivered == 4, "an honest frame is taken")
        } else {
            #expect(!open && delivered == 0, "a frame with a \(kind) was taken")
        }
    }

    /// Ids longer than any the host gives match nothing and are dropped before they are kept;
    /// what a guest says is escaped and cut before it is logged or returned.
    @Test func guestTextIsBoundedAndEscaped() {
        var event = Cocoon_Agent_V4_Event()
        event.exit = .with { $0.containerID = String(repeating: "x", count: 1000) }
        #expect(AgentEvent(event) == nil)
        event.exit = .with { $0.containerID = "c1" }
        #expect(AgentEvent(event) != nil)
        #expect(
            GuestText.printable("ok\nlevel=error msg=\"forged\"\u{1b}[2J") == #"ok\nlevel=error msg="forged"\u{1B}[2J"#)
        #expect(GuestText.printable(String(repeating: "a", count: 10_000)).utf8.count <= GuestText.maxMessage + 3)
    }

    /// A guest that stops reading cannot make the daemon hold what is sent to it: past 4 MiB
    /// waiting, calls fail at once (the first 16 MiB of stdin would otherwise all be kept), and a
    /// call that misses its deadline while nothing has been taken for a while closes the channel.
    @Test func aGuestThatStopsReadingHoldsAtMostTheCap() async throws {
        let guest = try FloodingGuest()
        guest.runDeaf()
        defer { guest.stop.store(true, ordering: .relaxed) }
        let client = try await AgentClient.connect(
            .serial(path: guest.path), token: Self.token, stuckAfter: .milliseconds(500))
        let chunk = [UInt8](repeating: 0x41, count: 1 << 20)
        let replies = (0..<16).map { _ in
            client.sendStdin(container: "c1", exec: "", chunk, close: false, timeout: .seconds(2))
        }
        // Refused for the cap when it was queued, not for a missed deadline: that is what makes a
        // refusal immediate. (Not a wall-clock bound: with the other suites running in parallel on
        // two cores, queuing 16 MiB in a debug build took 1.7 s once in a clean-clone run.)
        let last = await #expect(throws: AgentClientError.self) { try await replies[15].get() }
        if case .notReading = last {
        } else {
            Issue.record("the 16th MiB was not refused for the cap: \(String(describing: last))")
        }
        var outcomes: [AgentClientError] = []
        for reply in replies {
            do throws(AgentClientError) { try await reply.get() } catch { outcomes.append(error) }
        }
        let refused = outcomes.filter { if case .notReading = $0 { true } else { false } }.count
        #expect(refused >= 10, "\(16 - refused) MiB were kept for a guest that does not read: \(outcomes)")
        // The accepted calls missed their deadlines with nothing taken: the channel is closed.
        // sleep: a poll pause; the loop checks the condition
        for _ in 0..<100 where client.isOpen { try await Task.sleep(for: .milliseconds(20)) }
        #expect(!client.isOpen, "a channel stuck past a deadline is closed")
        await client.close()
    }

    @Test func theHostsFirstFrameIsTheTokenAndARefusalEndsTheChannel() async throws {
        let guest = try FloodingGuest()
        guest.runRefusing()
        defer { guest.stop.store(true, ordering: .relaxed) }
        let client = try await AgentClient.connect(.serial(path: guest.path), token: Self.token)
        let error = await #expect(throws: AgentClientError.self) { _ = try await client.health(timeout: .seconds(10)) }
        guard case .sessionRefused(let why)? = error else {
            Issue.record("not a refused session: \(String(describing: error))")
            return
        }
        #expect(why.contains("wrong token"))
        let first = try #require(guest.firstFrame.withLock { $0 })
        guard case .authenticate(let auth)? = first.request.call else {
            Issue.record("the first frame was not Authenticate: \(first)")
            return
        }
        #expect(Array(auth.token) == Self.token)
        #expect(auth.session.count == AgentSession.idBytes, "a session id goes with the token")
        #expect(guest.startedWithMarker.withLock { $0 }, "the session marker comes first")
        #expect(await eventually { !client.isOpen }, "the channel is closed after a refusal")
        await client.close()
    }

    @Test func creditPausesOverTheLimitAndResumesUnderHalf() {
        let credit = EventCredit(limit: 1000)
        let resumed = Atomic<Int>(0)
        credit.onResume { resumed.add(1, ordering: .relaxed) }
        #expect(credit.charge(600))
        #expect(!credit.charge(600))  // 1200 > 1000: stop reading
        credit.release(600)  // 600: not yet under half
        #expect(resumed.load(ordering: .relaxed) == 0)
        credit.release(200)  // 400: read again, once
        credit.release(100)
        #expect(resumed.load(ordering: .relaxed) == 1)
        #expect(EventCredit.cost(.output(containerID: "c", execID: "", stream: .stdout, data: [1])) == 256)
    }
}

/// A request too large for one agent frame is refused on this side: sent, the guest would end the
/// session, and every other call on the channel with it.
@Suite struct OversizedRequestTests {
    @Test func aRequestOverTheFrameLimitIsRefusedBeforeItIsSent() async throws {
        let guest = try EvilAgentTests.FloodingGuest()
        guest.runReading()
        defer { guest.stop.store(true, ordering: .relaxed) }
        let client = try await AgentClient.connect(.serial(path: guest.path), token: EvilAgentTests.token)
        // sleep: the session's first frame arrives whole (its size is not known here to wait for)
        try await Task.sleep(for: .milliseconds(300))
        let authBytes = guest.written.load(ordering: .relaxed)  // the session's first frame
        let error = await #expect(throws: AgentClientError.self) {
            try await client.writePort(
                connection: 1, [UInt8](repeating: 0, count: AgentFrame.maxFrameSize + 1), close: false,
                timeout: .seconds(5))
        }
        guard case .agent(.invalidArgument, let message)? = error else {
            Issue.record("not INVALID_ARGUMENT: \(String(describing: error))")
            return
        }
        #expect(message.contains("frame limit"), "\(message)")
        // The channel is intact: a small request still goes out whole.
        client.ackPort(connection: 1, bytes: 1)
        // sleep: the small frame arrives, and nothing more may within this window
        try await Task.sleep(for: .milliseconds(300))
        let received = guest.written.load(ordering: .relaxed) - authBytes
        #expect(authBytes > 32 && received > 0 && received < 64, "the host sent \(authBytes) + \(received) bytes")
        #expect(throws: AgentFrame.DecodeError.self) {
            var big = Cocoon_Agent_V4_Envelope()
            big.request.writePort.data = Data(count: AgentFrame.maxFrameSize)
            _ = try AgentFrame.encode(big)
        }
        await client.close()
    }
}
