import ArgumentParser
import CRI
import CRIAPI
import Config
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Hypervisor
import Images
import Logging
import Sandboxes

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
    @Option(help: "Override the log level (trace, debug, info, notice, warning, error, critical).") var logLevel: String?

    func run() async throws {
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
            guard let level = LogLevel(rawValue: logLevel) else { throw ValidationError("--log-level \(logLevel) is not a log level") }
            cfg.logLevel = level
        }
        let level = Logger.Level(rawValue: cfg.logLevel.rawValue) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "cocoond")

        for dir in [cfg.stateRoot, cfg.runDir, (cfg.socket as NSString).deletingLastPathComponent] {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        }
        try SocketGuard.claim(cfg.socket)

        let hypervisors: [String: any Hypervisor] = ["qemu": QEMUHypervisor(), "libvirt": LibvirtHypervisor()]
        let manager = SandboxManager(config: cfg, store: SandboxStore(stateRoot: cfg.stateRoot), hypervisors: hypervisors)
        await manager.recover()
        let images: ImageManager
        do {
            images = try ImageManager(stateRoot: cfg.stateRoot, registry: cfg.registry)
        } catch {
            throw ValidationError("image store: \(error)")
        }
        await images.resumeBlockImages()
        let containers = ContainerManager(sandboxes: manager, stateRoot: cfg.stateRoot)
        await containers.recover()

        let server = GRPCServer(
            transport: .http2NIOPosix(address: .unixDomainSocket(path: cfg.socket), transportSecurity: .plaintext),
            services: [RuntimeService(config: cfg, sandboxes: manager, containers: containers, images: images), ImageService(images: images), ImageImportService(images: images)])
        let signals = SignalWatcher(signals: [SIGTERM, SIGINT])
        let stateRootPath = cfg.stateRoot
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask {
                try await server.serve()
                // Detach before the event stream ends, so nothing an agent sends meanwhile is dropped.
                await manager.detachAll()
                containers.stopEvents()
            }
            group.addTask { await containers.processEvents() }
            group.addTask {
                if let address = try await server.listeningAddress {
                    logger.info("cocoond serving CRI v1", metadata: ["address": "\(address)", "state_root": "\(stateRootPath)"])
                }
            }
            group.addTask {
                for await signal in signals.stream {
                    logger.info("shutting down; pod VMs keep running", metadata: ["signal": "\(signal)"])
                    server.beginGracefulShutdown()
                    break
                }
            }
        }
        signals.cancel()
        await manager.detachAll()
        await images.shutdown()
        unlink(cfg.socket)
    }
}

/// Refuses to start when another daemon serves the socket; removes a stale socket file otherwise.
enum SocketGuard {
    static func claim(_ path: String) throws {
        guard FileManager.default.fileExists(atPath: path) else { return }
        guard path.utf8.count < MemoryLayout.size(ofValue: sockaddr_un().sun_path) else { throw ValidationError("socket path \(path) is too long") }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        let connected = UnixSocketAddress.connect(fd, path: path)
        if connected { throw ValidationError("another daemon is already serving \(path)") }
        unlink(path)
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
