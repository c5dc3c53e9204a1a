import AgentAPI
import BootContract
import CSpawn
import Foundation
import Models
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Spawn

/// A connection to one VM's guest agent. Owns the channel and the calls in flight on it: each call
/// has an id and a deadline; when the channel drops, every pending call fails at once, so a dead
/// guest shows up as an error, never a hang.
public final class AgentClient: Sendable {
    private let channel: Channel
    private let handler: NIOLoopBound<AgentClientHandler>
    public let endpoint: AgentEndpoint

    private init(channel: Channel, handler: NIOLoopBound<AgentClientHandler>, endpoint: AgentEndpoint) {
        self.channel = channel
        self.handler = handler
        self.endpoint = endpoint
    }

    /// Opens the channel (the hypervisor's socket, or vsock) and proves to the agent that this is its
    /// host: the first frame carries the VM's `token`; a guest that refuses it ends the channel.
    /// The guest need not be up yet: requests wait in the virtio-serial socket until the agent
    /// opens its port.
    /// `onEvent` receives the agent's process output and exit events, in the order they arrive;
    /// the channel stops reading while more than `credit`'s limit of them are not released.
    public static func connect(
        _ endpoint: AgentEndpoint, token: [UInt8], group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        timeout: Duration = .seconds(5), credit: EventCredit = EventCredit(), stuckAfter: Duration = .seconds(10),
        onEvent: (@Sendable (AgentEvent) -> Void)? = nil
    ) async throws(AgentClientError) -> AgentClient {
        let loop = group.next()
        // Kept when the pipeline is built: a guest may refuse the session and the channel close
        // before `connect` returns, and a closed pipeline no longer holds its handlers.
        let made = NIOLockedValueBox<NIOLoopBound<AgentClientHandler>?>(nil)
        let bootstrap = ClientBootstrap(group: loop)
            .connectTimeout(.nanoseconds(timeout.nanoseconds))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let handler = AgentClientHandler(
                        token: token, credit: credit, stuckAfter: .nanoseconds(stuckAfter.nanoseconds), onEvent: onEvent
                    )
                    try channel.pipeline.syncOperations.addHandler(handler)
                    made.withLockedValue { $0 = NIOLoopBound(handler, eventLoop: channel.eventLoop) }
                }
            }
        do {
            let channel: Channel
            switch endpoint {
            case .serial(let path):
                channel = try await bootstrap.connect(unixDomainSocketPath: path).get()
            case .vsock(let cid, let port):
                // From a privileged source port: the agent accepts no other, so a local user who
                // can open vsock sockets cannot reach (or hold) the agent.
                let ms = Int32(clamping: max(1, timeout.nanoseconds / 1_000_000))
                let fd = await OffPool.run { cocoon_vsock_connect_privileged(cid, port, ms) }
                guard fd >= 0 else {
                    throw AgentClientError.connectFailed("\(endpoint): \(String(cString: strerror(-fd)))")
                }
                channel = try await bootstrap.withConnectedSocket(fd).get()
            }
            guard let handler = made.withLockedValue({ $0 }) else {
                throw AgentClientError.connectFailed("\(endpoint): the channel was set up without its handler")
            }
            return AgentClient(channel: channel, handler: handler, endpoint: endpoint)
        } catch let error as AgentClientError {
            throw error
        } catch {
            throw .connectFailed("\(endpoint): \(error)")
        }
    }

    /// The connector the daemon's sandbox manager uses: the real agent channel.
    public static let connector: GuestAgentConnector = {
        endpoint, token, timeout, credit, onEvent async throws(AgentClientError) in
        try await AgentClient.connect(endpoint, token: token, timeout: timeout, credit: credit, onEvent: onEvent)
    }

    /// Sends one request and waits for its response, at most `timeout`.
    func call(_ request: Cocoon_Agent_V4_Request, name: String, timeout: Duration) async throws(AgentClientError)
        -> Cocoon_Agent_V4_Response
    {
        try await Self.answer(send(request, name: name, timeout: timeout))
    }

    /// Sends one request now and returns its answer to await later. Requests sent one after the
    /// other from one task reach the channel in that order (the event loop runs them in turn).
    func start(_ request: Cocoon_Agent_V4_Request, name: String, timeout: Duration) -> AgentReply {
        let future = send(request, name: name, timeout: timeout)
        return AgentReply { () async throws(AgentClientError) in _ = try await Self.answer(future) }
    }

    /// Calls `hook` with a call's name once it has waited `after` without an answer (before its
    /// deadline): the pod's owner looks at the VM then, to tell a guest that stopped running from a
    /// slow one.
    public func onLateCalls(after: Duration, _ hook: @escaping @Sendable (String) -> Void) {
        let handler = self.handler
        channel.eventLoop.execute { handler.value.late = (after, hook) }
    }

    private func send(_ request: Cocoon_Agent_V4_Request, name: String, timeout: Duration)
        -> EventLoopFuture<Cocoon_Agent_V4_Response>
    {
        let loop = channel.eventLoop
        let promise = loop.makePromise(of: Cocoon_Agent_V4_Response.self)
        let handler = self.handler
        loop.execute {
            handler.value.send(request, name: name, timeout: timeout, promise: promise)
        }
        return promise.futureResult
    }

    private static func answer(_ future: EventLoopFuture<Cocoon_Agent_V4_Response>) async throws(AgentClientError)
        -> Cocoon_Agent_V4_Response
    {
        let response: Cocoon_Agent_V4_Response
        do {
            response = try await future.get()
        } catch let error as AgentClientError {
            throw error
        } catch {
            throw .disconnected("\(error)")
        }
        if response.hasError {
            throw .agent(.init(response.error.code), message: GuestText.printable(response.error.message))
        }
        return response
    }

    /// Sends a request that gets no response (id 0): acknowledgements of delivered output.
    func notify(_ request: Cocoon_Agent_V4_Request) {
        let handler = self.handler
        channel.eventLoop.execute { handler.value.notify(request) }
    }

    /// False once the channel has gone away (the VM died, or the guest broke or refused the session).
    public var isOpen: Bool { channel.isActive }

    public func close() async {
        // try?: closing a closed channel fails; it is closed either way
        try? await channel.close().get()
    }
}

/// Lives on the channel's event loop: authenticates the session (its first frame), frames requests,
/// matches responses to calls by id, enforces deadlines, and fails everything pending when the
/// channel goes inactive.
final class AgentClientHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private struct Pending {
        let promise: EventLoopPromise<Cocoon_Agent_V4_Response>
        let deadline: Scheduled<Void>
        let late: Scheduled<Void>?

        func cancelTimers() {
            deadline.cancel()
            late?.cancel()
        }
    }

    /// Told of each call still unanswered after its duration (`AgentClient.onLateCalls`).
    var late: (after: Duration, hook: @Sendable (String) -> Void)?

    private var context: ChannelHandlerContext?
    private var decoder = AgentFrameDecoder(maxFrame: AgentFrame.maxGuestFrameSize)
    private var pending: [UInt64: Pending] = [:]
    private var nextID: UInt64 = 1
    /// Why the channel ended: what later calls fail with.
    private var closedError: AgentClientError?
    private var closedReason: String?
    private let onEvent: (@Sendable (AgentEvent) -> Void)?
    private let credit: EventCredit
    private let token: [UInt8]
    /// The id of the session's Authenticate request; its answer is awaited by nobody, but a refusal
    /// ends the channel.
    private var authID: UInt64?
    /// Chosen here, sent once with the token and carried by every later frame: a peer that takes
    /// over the channel without the guest seeing a hang-up never saw it, so its frames close the
    /// session instead of driving it.
    private let session: [UInt8] = (0..<AgentSession.idBytes).map { _ in UInt8.random(in: .min ... .max) }

    init(token: [UInt8], credit: EventCredit, stuckAfter: TimeAmount, onEvent: (@Sendable (AgentEvent) -> Void)?) {
        self.stuckAfter = stuckAfter
        self.token = token
        self.credit = credit
        self.onEvent = onEvent
    }

    /// The session's start: the marker and the token, before any request.
    func channelActive(context: ChannelHandlerContext) {
        authenticate(context)
        context.fireChannelActive()
    }

    /// Sends the session marker and Authenticate: a guest that had lost the frame boundary (a peer
    /// it refused, a previous host gone after a whole frame) finds the marker, whatever it was
    /// reading when it came.
    private func authenticate(_ context: ChannelHandlerContext) {
        var envelope = Cocoon_Agent_V4_Envelope()
        envelope.id = nextID
        authID = nextID
        nextID += 1
        envelope.request.authenticate.token = Data(token)
        envelope.request.authenticate.session = Data(session)
        // try?: a 32-byte token always encodes
        if let bytes = try? AgentFrame.encode(envelope) { write(context, AgentSession.marker + bytes) }
    }

    /// Bytes handed to the channel that the socket has not taken yet: a guest that stops reading
    /// holds them. Past `maxUnwritten` calls fail at once instead of piling up in the daemon, and a
    /// call whose deadline passes while bytes have waited `stuckAfter` (10 s) without any being taken
    /// closes the channel (the pod fails, not the host; a guest that is merely slow keeps it).
    private var unwritten = 0
    private var lastWritten = NIODeadline.now()
    static let maxUnwritten = 4 << 20
    private let stuckAfter: TimeAmount

    private func write(_ context: ChannelHandlerContext, _ bytes: [UInt8]) {
        if unwritten == 0 { lastWritten = .now() }
        unwritten += bytes.count
        let written = context.eventLoop.makePromise(of: Void.self)
        written.futureResult.assumeIsolated().whenComplete { [weak self] _ in
            self?.unwritten -= bytes.count
            self?.lastWritten = .now()
        }
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(bytes: bytes)), promise: written)
    }

    /// Bytes wait and none was taken for `stuckAfter`.
    private var stuck: Bool { unwritten > 0 && NIODeadline.now() - lastWritten >= stuckAfter }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        let channel = context.channel
        credit.onResume {
            // The consumer caught up: read again (autoRead also asks for the next read).
            channel.setOption(.autoRead, value: true).whenFailure { _ in }
        }
    }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func send(
        _ request: Cocoon_Agent_V4_Request, name: String, timeout: Duration,
        promise: EventLoopPromise<Cocoon_Agent_V4_Response>
    ) {
        guard let context, closedError == nil else {
            promise.fail(closedError ?? AgentClientError.disconnected("no channel"))
            return
        }
        let id = nextID
        nextID += 1
        var envelope = Cocoon_Agent_V4_Envelope()
        envelope.id = id
        envelope.session = Data(session)
        envelope.request = request
        let bytes: [UInt8]
        do {
            bytes = try AgentFrame.encode(envelope)
        } catch AgentFrame.DecodeError.frameTooLarge(let size) {
            // Refused before it is sent: the channel and every other call on it go on.
            let limit = AgentFrame.maxFrameSize >> 20
            promise.fail(
                AgentClientError.agent(
                    .invalidArgument,
                    message: "\(name) of \(size) bytes exceeds the agent channel's \(limit) MiB frame limit"))
            return
        } catch {
            promise.fail(AgentClientError.protocolViolation("cannot encode \(name): \(error)"))
            return
        }
        guard unwritten + bytes.count <= Self.maxUnwritten else {
            promise.fail(
                AgentClientError.notReading(
                    "\(name) refused: \(unwritten) bytes already wait for the guest (at most \(Self.maxUnwritten))"))
            return
        }
        let deadline = context.eventLoop.assumeIsolated().scheduleTask(in: .nanoseconds(timeout.nanoseconds)) {
            [weak self] () -> Void in
            guard let self, let call = self.pending.removeValue(forKey: id) else { return }
            call.promise.fail(AgentClientError.deadlineExceeded(call: name, after: timeout, unread: self.unwritten))
            if self.stuck, let context = self.context {
                // Late and not reading what it was sent: the channel is stuck, not just slow.
                self.failAll("the guest stopped reading its channel (\(self.unwritten) bytes waiting)")
                context.close(promise: nil)
            }
        }
        let late = self.late.flatMap { after, hook -> Scheduled<Void>? in
            guard timeout > after else { return nil }
            return context.eventLoop.assumeIsolated().scheduleTask(in: .nanoseconds(after.nanoseconds)) {
                [weak self] () -> Void in
                if self?.pending[id] != nil { hook(name) }
            }
        }
        pending[id] = Pending(promise: promise, deadline: deadline, late: late)
        write(context, bytes)
    }

    func notify(_ request: Cocoon_Agent_V4_Request) {
        guard let context, closedError == nil else { return }
        var envelope = Cocoon_Agent_V4_Envelope()
        envelope.session = Data(session)
        envelope.request = request
        // try?: a notification that cannot be encoded is dropped; its stream stalls, nothing else
        guard let bytes = try? AgentFrame.encode(envelope), unwritten + bytes.count <= Self.maxUnwritten else { return }
        write(context, bytes)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        decoder.append(buffer.readableBytesView)
        do {
            while let envelope = try decoder.nextFromGuest() {
                dispatch(envelope)
            }
        } catch {
            failAll("\(error)")
            context.close(promise: nil)
        }
    }

    private func dispatch(_ envelope: Cocoon_Agent_V4_GuestEnvelope) {
        switch envelope.body {
        case .response(let response)? where envelope.id == authID:
            authID = nil
            if response.hasError, let context {
                failAll(.sessionRefused(GuestText.printable(response.error.message)))
                context.close(promise: nil)
            }
        case .response(let response)?:
            guard let call = pending.removeValue(forKey: envelope.id) else { return }  // late reply after its deadline
            call.cancelTimers()
            call.promise.succeed(response)
        case .event(let event)?:
            // Hello (a new session's greeting) is not an event the host acts on.
            guard let event = AgentEvent(event), let onEvent else { return }
            if !credit.charge(EventCredit.cost(event)), let context {
                // The consumer is behind: stop reading; the guest's writes block until it catches up.
                context.channel.setOption(.autoRead, value: false).whenFailure { _ in }
            }
            onEvent(event)
        default:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll("the VM or its channel went away")
        let gone = AgentEvent.disconnected(reason: closedReason ?? "the VM or its channel went away")
        _ = credit.charge(EventCredit.cost(gone))  // released by the consumer like any other
        onEvent?(gone)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        failAll("\(error)")
        context.close(promise: nil)
    }

    private func failAll(_ reason: String) { failAll(.disconnected(reason), reason: reason) }

    /// Fails every call in flight with `error`; later calls fail as disconnected with its reason.
    private func failAll(_ error: AgentClientError, reason: String? = nil) {
        closedError = closedError ?? error
        closedReason = closedReason ?? reason ?? "\(error)"
        let calls = pending
        pending.removeAll()
        for (_, call) in calls {
            call.cancelTimers()
            call.promise.fail(error)
        }
    }
}
