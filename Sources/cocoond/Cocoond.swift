import ArgumentParser
import CRI
import CRIAPI
import CocoonServices
import Config
import Containers
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Hypervisor
import Images
import Logging
import Models
import Persistence
import PodNetwork
import Sandboxes
import Streaming

/// The Cocoon daemon: serves CRI v1 on a Unix socket and runs each pod sandbox in its own VM.
/// VMs outlive the daemon: on start it finds the sandboxes of the previous run again.
@main
struct Cocoond: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cocoond", abstract: "Cocoon CRI runtime daemon: one microVM per pod sandbox.")

    @Option(help: "Configuration file (TOML).") var config: String?
    @Option(help: "Override the socket path from the configuration.") var socket: String?
    @Option(help: "Override the state root from the configuration.") var stateRoot: String?
    @Option(help: "Override the run directory from the configuration.") var runDir: String?
    @Option(help: "Override the log level (trace, debug, info, notice, warning, error, critical).") var logLevel:
        String?

    func run() async throws {
        let cfg = try resolvedConfig()
        Self.bootstrapLogging(cfg.logLevel)
        let logger = Logger(label: "cocoond")
        OpenFileLimit.raise(logger: logger)
        try Self.prepareDirectories(cfg)
        let socketAccess = try SocketAccess(group: cfg.socketGroup)
        let socketPath = cfg.socket
        try await SocketGuard.claim(cfg.socket)
        await Accelerator.shared.configure(
            cacheFile: cfg.stateRoot + "/accel.json", logger: Logger(label: "cocoon.accel"))

        let network = CNIPodNetwork(
            .init(
                confDir: cfg.cni.confDir, binDirs: cfg.cni.binDirs,
                pluginTimeout: .seconds(cfg.cni.pluginTimeoutSeconds),
                cacheDir: cfg.stateRoot + "/cni/results"))
        let manager = SandboxManager(
            config: cfg, hypervisors: [QEMUHypervisor(), LibvirtHypervisor(), NativeSandboxer()], network: network)
        await manager.recover()
        let containers = ContainerManager(pods: manager, stateRoot: cfg.stateRoot, runDir: cfg.runDir)
        await containers.recover()
        let images: ImageManager
        do {
            images = try ImageManager(
                stateRoot: cfg.stateRoot, registry: cfg.registry, treesInUse: await containers.rootfsImagesInUse())
        } catch {
            throw ValidationError("image store: \(error)")
        }
        await containers.onRootfsUseChange { await images.setTreesInUse($0) }
        await images.resumeBlockImages()
        // Templates load (or build) in the background; pods boot cold until theirs is ready.
        await manager.prepareTemplates()

        let streaming = try await Self.bindStreaming(cfg, containers: containers)
        logger.info("streaming server listening", metadata: ["url": "\(streaming.baseURL)"])
        let server = Self.makeServer(
            cfg, sandboxes: manager, containers: containers, images: images, streaming: streaming)
        let signals = SignalWatcher(signals: [SIGTERM, SIGINT])
        let systemd = SystemdNotifier()
        try await withThrowingTaskGroup(of: Void.self) { watchdog in
            watchdog.addTask { await systemd.watchdog() }  // until serving ends
            try await Self.serve(
                server, streaming: streaming, sandboxes: manager, containers: containers, signals: signals,
                socketAccess: socketAccess, socketPath: socketPath, stateRootPath: cfg.stateRoot,
                handlers: cfg.handlers, systemd: systemd, logger: logger)
            watchdog.cancelAll()
        }
        signals.cancel()
        await manager.detachAll()
        await images.shutdown()
        unlink(cfg.socket)
    }

    /// The configuration file's settings with the command line's overrides applied.
    private func resolvedConfig() throws -> CocoonConfig {
        var cfg: CocoonConfig
        do {
            cfg = try ConfigLoader.load(path: config ?? CocoonConfig.defaultPath, required: config != nil)
        } catch {
            throw ValidationError("\(error)")
        }
        if let stateRoot { cfg.stateRoot = stateRoot }
        if let runDir {
            if socket == nil && cfg.socket == CocoonConfig().socket { cfg.socket = runDir + "/cocoon.sock" }
            cfg.runDir = runDir
        }
        if let socket { cfg.socket = socket }
        if let logLevel {
            guard let level = LogLevel(rawValue: logLevel) else {
                throw ValidationError("--log-level \(logLevel) is not a log level")
            }
            cfg.logLevel = level
        }
        return cfg
    }

    /// Sends every logger to standard error, at `logLevel`.
    private static func bootstrapLogging(_ logLevel: LogLevel) {
        let level = Logger.Level(rawValue: logLevel.rawValue) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }

    /// Sets the daemon's umask and creates its directories: the shared ones passable, its own state private.
    private static func prepareDirectories(_ cfg: CocoonConfig) throws {
        // What the daemon creates is its own unless it says otherwise (VM processes and helpers get
        // 022 back); the directories others must pass through are made passable explicitly.
        umask(0o077)
        for dir in [cfg.stateRoot, cfg.runDir, (cfg.socket as NSString).deletingLastPathComponent] {
            do {
                try PassableDirectory.ensure(dir)
            } catch {
                throw ValidationError("cannot create \(dir): \(error)")
            }
        }
        // The daemon's own state: nobody else may read it (tokens, image trees with setuid files).
        for dir in ["sandboxes", "containers", "images", "cni"] {
            do {
                try PrivateDirectory.ensure(cfg.stateRoot + "/" + dir)
            } catch {
                throw ValidationError("cannot make \(cfg.stateRoot)/\(dir) private (0700): \(error)")
            }
        }
    }

    /// Binds the streaming server (exec, attach, port-forward) as configured.
    private static func bindStreaming(_ cfg: CocoonConfig, containers: ContainerManager) async throws
        -> StreamingServer
    {
        try await StreamingServer.bind(
            .init(
                address: cfg.streaming.address, port: cfg.streaming.port,
                streamCreationTimeout: .seconds(cfg.streaming.streamCreationTimeoutSeconds),
                idleTimeout: .seconds(cfg.streaming.streamIdleTimeoutSeconds),
                urlTTL: .seconds(cfg.streaming.urlTTLSeconds),
                tls: cfg.streaming.tlsCertFile.isEmpty ? nil : (cfg.streaming.tlsCertFile, cfg.streaming.tlsKeyFile)),
            runtime: ContainerStreamingRuntime(containers: containers))
    }

    /// The gRPC server of the CRI services (and Cocoon's own) on the configured Unix socket.
    private static func makeServer(
        _ cfg: CocoonConfig, sandboxes manager: SandboxManager, containers: ContainerManager, images: ImageManager,
        streaming: StreamingServer
    ) -> GRPCServer<HTTP2ServerTransport.Posix> {
        GRPCServer(
            transport: .http2NIOPosix(address: .unixDomainSocket(path: cfg.socket), transportSecurity: .plaintext),
            services: [
                RuntimeService(
                    config: cfg, sandboxes: manager, containers: containers, images: images, streaming: streaming),
                ImageService(images: images, treesInUse: { await containers.rootfsImagesInUse() }),
                ImageImportService(images: images),
                TemplateRebuildService(sandboxes: manager),
            ])
    }

    /// Serves until the gRPC server stops (after a signal's graceful shutdown), then ends the event streams.
    private static func serve(
        _ server: GRPCServer<HTTP2ServerTransport.Posix>, streaming: StreamingServer, sandboxes manager: SandboxManager,
        containers: ContainerManager, signals: SignalWatcher, socketAccess: SocketAccess, socketPath: String,
        stateRootPath: String, handlers: [String: RuntimeHandler], systemd: SystemdNotifier, logger: Logger
    ) async throws {
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask {
                try await server.serve()
                await streaming.close()
                await manager.stopTemplates()
                // Detach before the event stream ends, so nothing an agent sends meanwhile is dropped.
                await manager.detachAll()
                manager.endAgentEvents()
                containers.endLifecycleEvents()
            }
            group.addTask { await containers.processEvents() }
            group.addTask { await manager.watchLateCalls() }
            group.addTask { try await streaming.run() }
            group.addTask { await Self.checkAccelerators(handlers, logger: logger) }
            group.addTask {
                if let address = try await server.listeningAddress {
                    // Bound under the umask's 077: nobody else could connect before this.
                    try socketAccess.apply(to: socketPath)
                    logger.info(
                        "cocoond serving CRI v1", metadata: ["address": "\(address)", "state_root": "\(stateRootPath)"])
                    systemd.notify("READY=1\nSTATUS=serving CRI v1 on \(socketPath)\nMAINPID=\(getpid())")
                }
            }
            group.addTask {
                for await signal in signals.stream {
                    logger.info("shutting down; pod VMs keep running", metadata: ["signal": "\(signal)"])
                    systemd.notify("STOPPING=1\nSTATUS=shutting down; pods keep running")
                    // Endless streams (GetContainerEvents) end first, or the graceful shutdown waits on them forever.
                    containers.endLifecycleEvents()
                    await streaming.close()
                    server.beginGracefulShutdown()
                    break
                }
            }
        }
    }

    /// Decides KVM or TCG for each guest now (a real boot, cached), not on the first pod; warns when
    /// libvirtd's view of KVM disagrees.
    private static func checkAccelerators(_ handlers: [String: RuntimeHandler], logger: Logger) async {
        var accels: [Accel] = []
        for handler in handlers.values where handler.accel != .tcg {
            accels.append(
                await Accelerator.shared.decide(
                    qemu: QEMUHypervisor.defaultBinary, kernel: handler.kernel, initrd: handler.initrd
                ).accel)
        }
        if handlers.values.contains(where: { $0.backend == .libvirt }),
            let problem = LibvirtdKVMView.current().disagreement(with: accels)
        {
            logger.warning("libvirt backend: \(problem)")
        }
    }
}

/// Refuses to start when another daemon serves the socket; removes a stale socket file otherwise.
/// "Serves" means it answers a CRI `Version` call: a socket that merely accepts connections can be a
/// listener that a dead daemon's child still holds, which nobody will ever answer.
enum SocketGuard {
    static func claim(_ path: String) async throws {
        guard FileManager.default.fileExists(atPath: path) else { return }
        guard path.utf8.count < MemoryLayout.size(ofValue: sockaddr_un().sun_path) else {
            throw ValidationError("socket path \(path) is too long")
        }
        if let version = await answeringRuntime(path) {
            throw ValidationError("another CRI runtime (\(version)) is already serving \(path)")
        }
        unlink(path)
    }

    /// The runtime name and version of whatever answers CRI Version on `path` within 3 s, or nil.
    static func answeringRuntime(_ path: String) async -> String? {
        await withTaskGroup(of: String?.self) { group in
            group.addTask {
                do {
                    let transport = try HTTP2ClientTransport.Posix(
                        target: .unixDomainSocket(path: path), transportSecurity: .plaintext)
                    return try await withGRPCClient(transport: transport) { client in
                        var options = CallOptions.defaults
                        options.timeout = .seconds(3)
                        let r = try await Runtime_V1_RuntimeService.Client(wrapping: client).version(
                            Runtime_V1_VersionRequest(), options: options)
                        return "\(r.runtimeName) \(r.runtimeVersion)"
                    }
                } catch {
                    return nil
                }
            }
            group.addTask {
                // try?: cancelled when the Version call answers first
                try? await Task.sleep(for: .seconds(5))
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
    }
}

/// Delivers SIGTERM/SIGINT as an async stream (the signals are ignored by default handlers).
/// DispatchSource objects are thread-safe; the class only holds them to cancel them.
final class SignalWatcher: @unchecked Sendable {
    let stream: AsyncStream<Int32>
    private let sources: [DispatchSourceSignal]

    init(signals: [Int32]) {
        var continuation: AsyncStream<Int32>.Continuation!
        stream = AsyncStream { continuation = $0 }
        let cont = continuation!
        sources = signals.map { sig in
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { cont.yield(sig) }
            source.resume()
            return source
        }
    }

    func cancel() {
        for s in sources { s.cancel() }
    }
}
