import AgentAPI
import BootContract
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

    /// Opens the channel (the hypervisor's socket, or vsock). The guest need not be up yet:
    /// requests wait in the virtio-serial socket until the agent opens its port.
    /// `onEvent` receives the agent's process output and exit events, in the order they arrive;
    /// the channel stops reading while more than `credit`'s limit of them are not released.
    public static func connect(
        _ endpoint: AgentEndpoint, group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        timeout: Duration = .seconds(5), credit: EventCredit = EventCredit(),
        onEvent: (@Sendable (AgentEvent) -> Void)? = nil
    ) async throws(AgentClientError) -> AgentClient {
        let loop = group.next()
        let bootstrap = ClientBootstrap(group: loop)
            .connectTimeout(.nanoseconds(timeout.nanoseconds))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        AgentClientHandler(credit: credit, onEvent: onEvent))
                }
            }
        do {
            let channel: Channel
            switch endpoint {
            case .serial(let path):
                channel = try await bootstrap.connect(unixDomainSocketPath: path).get()
            case .vsock(let cid, let port):
                channel = try await bootstrap.connect(
                    to: VsockAddress(cid: .init(rawValue: cid), port: .init(rawValue: port))
                ).get()
            }
            let handler = try await channel.eventLoop.submit {
                NIOLoopBound(
                    try channel.pipeline.syncOperations.handler(type: AgentClientHandler.self),
                    eventLoop: channel.eventLoop)
            }.get()
            return AgentClient(channel: channel, handler: handler, endpoint: endpoint)
        } catch {
            throw .connectFailed("\(endpoint): \(error)")
        }
    }

    /// The connector the daemon's sandbox manager uses: the real agent channel.
    public static let connector: GuestAgentConnector = {
        endpoint, timeout, credit, onEvent async throws(AgentClientError) in
        try await AgentClient.connect(endpoint, timeout: timeout, credit: credit, onEvent: onEvent)
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
            throw .agent(.init(response.error.code), message: response.error.message)
        }
        return response
    }

    /// Sends a request that gets no response (id 0): acknowledgements of delivered output.
    func notify(_ request: Cocoon_Agent_V4_Request) {
        let handler = self.handler
        channel.eventLoop.execute { handler.value.notify(request) }
    }

    public func close() async {
        // try?: closing a closed channel fails; it is closed either way
        try? await channel.close().get()
    }
}

/// Lives on the channel's event loop: frames requests, matches responses to calls by id, enforces
/// deadlines, and fails everything pending when the channel goes inactive.
final class AgentClientHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private struct Pending {
        let promise: EventLoopPromise<Cocoon_Agent_V4_Response>
        let deadline: Scheduled<Void>
    }

    private var context: ChannelHandlerContext?
    private var decoder = AgentFrameDecoder()
    private var pending: [UInt64: Pending] = [:]
    private var nextID: UInt64 = 1
    private var closedReason: String?
    private let onEvent: (@Sendable (AgentEvent) -> Void)?
    private let credit: EventCredit

    init(credit: EventCredit, onEvent: (@Sendable (AgentEvent) -> Void)?) {
        self.credit = credit
        self.onEvent = onEvent
    }

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
        guard let context, closedReason == nil else {
            promise.fail(AgentClientError.disconnected(closedReason ?? "no channel"))
            return
        }
        let id = nextID
        nextID += 1
        var envelope = Cocoon_Agent_V4_Envelope()
        envelope.id = id
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
        let deadline = context.eventLoop.assumeIsolated().scheduleTask(in: .nanoseconds(timeout.nanoseconds)) {
            [weak self] () -> Void in
            guard let self, let call = self.pending.removeValue(forKey: id) else { return }
            call.promise.fail(AgentClientError.deadlineExceeded(call: name, after: timeout))
        }
        pending[id] = Pending(promise: promise, deadline: deadline)
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(bytes: bytes)), promise: nil)
    }

    func notify(_ request: Cocoon_Agent_V4_Request) {
        guard let context, closedReason == nil else { return }
        var envelope = Cocoon_Agent_V4_Envelope()
        envelope.request = request
        // try?: a notification that cannot be encoded is dropped; its stream stalls, nothing else
        guard let bytes = try? AgentFrame.encode(envelope) else { return }
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(bytes: bytes)), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        decoder.append(buffer.readableBytesView)
        do {
            while let envelope = try decoder.next() {
                dispatch(envelope)
            }
        } catch {
            failAll("\(error)")
            context.close(promise: nil)
        }
    }

    private func dispatch(_ envelope: Cocoon_Agent_V4_Envelope) {
        switch envelope.body {
        case .response(let response)?:
            guard let call = pending.removeValue(forKey: envelope.id) else { return }  // late reply after its deadline
            call.deadline.cancel()
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

    private func failAll(_ reason: String) {
        closedReason = closedReason ?? reason
        let calls = pending
        pending.removeAll()
        for (_, call) in calls {
            call.deadline.cancel()
            call.promise.fail(AgentClientError.disconnected(reason))
        }
    }
}
