import Errors
import Logging
import Models
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOWebSocket

/// The CRI streaming server: the HTTP endpoint whose URLs Exec, Attach and PortForward return. It
/// owns the tokens of the URLs handed out and the listening socket; each connection is one exec,
/// attach or port-forward session, served by its own task until either side ends it.
public final class StreamingServer: Sendable {
    public struct Options: Sendable {
        public var address: String
        /// 0: an ephemeral port.
        public var port: Int
        /// How long a client has to open its streams after the upgrade.
        public var streamCreationTimeout: Duration
        /// A session that moves no byte either way for this long is closed.
        public var idleTimeout: Duration
        /// The largest frame a client may send.
        public var maxFrame: Int
        /// How long a URL from Exec, Attach or PortForward stays valid (the kubelet's minute).
        public var urlTTL: Duration
        /// PEM files of the server's certificate (chain) and key: the server speaks HTTPS when set.
        public var tls: (certificate: String, key: String)?
        /// How long a connection may take to send its request and be upgraded; it is closed then.
        public var upgradeTimeout: Duration
        /// The most connections open at once; more are closed as they come.
        public var maxConnections: Int
        public init(
            address: String = "127.0.0.1", port: Int = 0, streamCreationTimeout: Duration = .seconds(30),
            idleTimeout: Duration = .seconds(4 * 3600), maxFrame: Int = 1 << 20,
            urlTTL: Duration = .seconds(60), tls: (certificate: String, key: String)? = nil,
            upgradeTimeout: Duration = .seconds(10), maxConnections: Int = 1024
        ) {
            self.upgradeTimeout = upgradeTimeout
            self.maxConnections = maxConnections
            self.urlTTL = urlTTL
            self.tls = tls
            self.address = address
            self.port = port
            self.streamCreationTimeout = streamCreationTimeout
            self.idleTimeout = idleTimeout
            self.maxFrame = maxFrame
        }
    }

    private let listener: NIOAsyncChannel<EventLoopFuture<UpgradedConnection>, Never>
    private let tokens: StreamingTokens<StreamingRequest>
    private let runtime: any StreamingRuntime
    private let options: Options
    private let gate: ConnectionGate
    private let logger: Logger
    /// `http://ADDRESS:PORT` as clients reach it.
    public let baseURL: String

    private init(
        listener: NIOAsyncChannel<EventLoopFuture<UpgradedConnection>, Never>,
        tokens: StreamingTokens<StreamingRequest>,
        runtime: any StreamingRuntime, options: Options, gate: ConnectionGate, logger: Logger, baseURL: String
    ) {
        self.gate = gate
        self.listener = listener
        self.tokens = tokens
        self.runtime = runtime
        self.options = options
        self.logger = logger
        self.baseURL = baseURL
    }

    /// Binds the listening socket; `run` serves it.
    public static func bind(
        _ options: Options, runtime: any StreamingRuntime, logger: Logger = Logger(label: "cocoon.streaming")
    ) async throws(CocoonError) -> StreamingServer {
        let tokens = StreamingTokens<StreamingRequest>(ttl: options.urlTTL)
        let maxFrame = options.maxFrame
        let tls = try options.tls.map { files throws(CocoonError) in try tlsContext(files) }
        let gate = ConnectionGate(limit: options.maxConnections)
        let upgradeTimeout = TimeAmount.nanoseconds(
            options.upgradeTimeout.components.seconds * 1_000_000_000
                + options.upgradeTimeout.components.attoseconds / 1_000_000_000)
        let listener: NIOAsyncChannel<EventLoopFuture<UpgradedConnection>, Never>
        do {
            listener = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .serverChannelOption(.backlog, value: 256)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                .bind(host: options.address, port: options.port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let promise = channel.eventLoop.makePromise(of: UpgradedConnection.self)
                        guard gate.enter() else {
                            channel.close(promise: nil)
                            promise.succeed(.refused)
                            return promise.futureResult
                        }
                        channel.closeFuture.whenComplete { _ in gate.leave() }
                        // A client that never finishes its request holds no connection for long.
                        let deadline = channel.eventLoop.scheduleTask(in: upgradeTimeout) {
                            channel.close(promise: nil)
                        }
                        promise.futureResult.whenComplete { _ in deadline.cancel() }
                        let sync = channel.pipeline.syncOperations
                        if let tls { try sync.addHandler(NIOSSLServerHandler(context: tls)) }
                        try sync.addHandler(HTTPResponseEncoder())
                        try sync.addHandler(
                            ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes)))
                        try sync.addHandler(StreamingHTTPHandler(tokens: tokens, promise: promise, maxFrame: maxFrame))
                        return promise.futureResult
                    }
                }
        } catch {
            throw .unavailable("streaming server cannot listen on \(options.address):\(options.port): \(error)")
        }
        let port = listener.channel.localAddress?.port ?? options.port
        let host = options.address.contains(":") ? "[\(options.address)]" : options.address
        return StreamingServer(
            listener: listener, tokens: tokens, runtime: runtime, options: options, gate: gate, logger: logger,
            baseURL: "\(tls == nil ? "http" : "https")://\(host):\(port)")
    }

    private static func tlsContext(_ files: (certificate: String, key: String)) throws(CocoonError) -> NIOSSLContext {
        do {
            let chain = try NIOSSLCertificate.fromPEMFile(files.certificate).map {
                NIOSSLCertificateSource.certificate($0)
            }
            guard !chain.isEmpty else { throw CocoonError.invalidArgument("no certificate in \(files.certificate)") }
            let key = try NIOSSLPrivateKey(file: files.key, format: .pem)
            return try NIOSSLContext(
                configuration: .makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key)))
        } catch let error as CocoonError {
            throw error
        } catch {
            throw .invalidArgument(
                "streaming TLS: cannot use certificate \(files.certificate) with key \(files.key): \(error)")
        }
    }

    /// Connections open now (upgraded or not yet).
    public var openConnections: Int { gate.count }

    /// The URL for a checked request: single use, valid for a minute.
    public func url(for request: StreamingRequest) throws(CocoonError) -> String {
        do {
            let token = try tokens.insert(request)
            return "\(baseURL)/\(request.kind.rawValue)/\(token)"
        } catch {
            throw .unavailable("\(error)")
        }
    }

    /// Serves connections until the task is cancelled; each session runs in a child task.
    public func run() async throws {
        try await withThrowingDiscardingTaskGroup { group in
            try await listener.executeThenClose { inbound in
                for try await upgrade in inbound {
                    group.addTask { await self.serve(upgrade) }
                }
            }
        }
    }

    /// Stops accepting connections (sessions in progress end with their clients).
    public func close() async {
        // try?: closing a closed listener fails; it is closed either way
        try? await listener.channel.close()
    }

    private func serve(_ upgrade: EventLoopFuture<UpgradedConnection>) async {
        let upgraded: UpgradedConnection
        do {
            upgraded = try await upgrade.get()
        } catch {
            return
        }
        let activity = IdleWatch(timeout: options.idleTimeout)
        let channel: Channel
        switch upgraded {
        case .refused: return
        case .spdy(let c, _, _): channel = c.channel
        case .webSocket(let c, _, _): channel = c.channel
        }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.session(upgraded, activity: activity) }
            group.addTask {
                await activity.idle()
                guard !Task.isCancelled else { return }
                self.logger.info("closing an idle streaming session", metadata: ["idle": "\(activity.timeout)"])
                // try?: the session may have closed the channel at the same moment
                try? await channel.close()
                // Stay until the session has ended: the first task to finish cancels the other.
                try? await Task.sleep(for: .seconds(3600))
            }
            _ = await group.next()
            group.cancelAll()
        }
    }

    private func session(_ upgraded: UpgradedConnection, activity: IdleWatch) async {
        do {
            switch upgraded {
            case .refused:
                return
            case .spdy(let channel, let request, let version):
                if case .portForward(let podID, _) = request {
                    try await PortForwardOverSPDY(podID: podID, runtime: runtime, logger: logger, activity: activity)
                        .serve(channel)
                } else {
                    try await RemoteCommandOverSPDY(
                        request: request, version: version, runtime: runtime, logger: logger, activity: activity,
                        streamCreationTimeout: options.streamCreationTimeout
                    ).serve(channel)
                }
            case .webSocket(let channel, let request, let version):
                if case .portForward(let podID, let ports) = request {
                    try await PortForwardOverWebSocket(
                        podID: podID, ports: ports, runtime: runtime, logger: logger, activity: activity
                    ).serve(channel)
                } else {
                    try await RemoteCommandOverWebSocket(
                        request: request, version: version, runtime: runtime, logger: logger, activity: activity
                    ).serve(channel)
                }
            }
        } catch {
            logger.debug("streaming session failed", metadata: ["error": "\(error)"])
        }
    }
}
