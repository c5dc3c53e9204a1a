import ArgumentParser
import CRIAPI
import Dispatch
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import NIOCore
import NIOWebSocket

/// The wire a streaming exec or attach client speaks: SPDY/3.1 (`v4.channel.k8s.io`, the default, as
/// kubectl and crictl) or WebSocket (`v5.channel.k8s.io`).
enum StreamingTransport: String, Sendable, CaseIterable, ExpressibleByArgument {
    case spdy
    case websocket
}

/// What a remote command session sends: stdin, its end, and terminal sizes.
struct RemoteCommandInput: Sendable {
    let stdin: @Sendable ([UInt8]) async throws -> Void
    let closeStdin: @Sendable () async throws -> Void
    let resize: @Sendable (_ width: UInt16, _ height: UInt16) async throws -> Void
}

/// An exec or attach session from this terminal: stdin to the process (its end closes the
/// process's stdin), stdout and stderr to ours, the terminal's size at start and on every SIGWINCH,
/// and the result from the error stream. Returns the remote process's exit code.
enum RemoteCommandClient {
    /// Asks the runtime for the URL (Exec or Attach), then runs the session.
    static func run(
        _ global: GlobalOptions, transport: StreamingTransport, stdin: Bool, tty: Bool,
        url: (Runtime_V1_RuntimeService.Client<HTTP2ClientTransport.Posix>, CallOptions) async throws -> String
    ) async throws -> Int32 {
        let url = try await global.endpoint().withClients { rt, _ in try await url(rt, global.callOptions()) }
        return try await run(url: url, transport: transport, stdin: stdin, tty: tty)
    }

    static func run(url: String, transport: StreamingTransport, stdin: Bool, tty: Bool) async throws -> Int32 {
        let terminal = tty ? RawTerminal() : nil
        defer { terminal?.restore() }
        let input: @Sendable (RemoteCommandInput) async throws -> Void = { input in
            try await withThrowingTaskGroup(of: Void.self) { group in
                if tty {
                    if let size = RawTerminal.size() { try await input.resize(size.width, size.height) }
                    group.addTask {
                        for await _ in windowChanges() {
                            if let size = RawTerminal.size() { try await input.resize(size.width, size.height) }
                        }
                    }
                }
                if stdin {
                    group.addTask {
                        for await chunk in DescriptorReader.chunks(0) { try await input.stdin(chunk) }
                        try await input.closeStdin()
                    }
                }
                try await group.waitForAll()
            }
        }
        let output: @Sendable (Int32, [UInt8]) -> Void = { fd, bytes in write(fd, bytes) }
        let status: [UInt8]
        switch transport {
        case .websocket:
            status = try await overWebSocket(url: url, input: input, output: output)
        case .spdy:
            status = try await RemoteCommandOverSPDYClient.run(
                url: url, stdin: stdin, tty: tty, input: input, output: output)
        }
        return exitCode(fromStatus: status)
    }

    /// The session over WebSocket v5: stdin on channel 0 (its end as v5's close of channel 0),
    /// stdout and stderr from 1 and 2, sizes to 4, and the status from 3, which is returned.
    static func overWebSocket(
        url: String, input: @escaping @Sendable (RemoteCommandInput) async throws -> Void,
        output: @escaping @Sendable (Int32, [UInt8]) -> Void
    ) async throws -> [UInt8] {
        let channel = try await StreamingClient.connect(url, subprotocol: "v5.channel.k8s.io")
        return try await channel.executeThenClose { inbound, outbound in
            try await withThrowingTaskGroup(of: Void.self) { group -> [UInt8] in
                group.addTask {
                    try await input(
                        RemoteCommandInput(
                            stdin: { try await outbound.write(StreamingClient.frame(channel: 0, $0)) },
                            closeStdin: { try await outbound.write(StreamingClient.frame(channel: 255, [0])) },
                            resize: {
                                try await outbound.write(StreamingClient.frame(channel: 4, resizeMessage($0, $1)))
                            }
                        ))
                }
                var status: [UInt8] = []
                receive: for try await frame in inbound {
                    switch frame.opcode {
                    case .binary:
                        var data = frame.unmaskedData
                        guard let channel: UInt8 = data.readInteger() else { continue }
                        let bytes = Array(data.readableBytesView)
                        switch channel {
                        case 1, 2: output(Int32(channel), bytes)
                        case 3: status += bytes
                        default: break
                        }
                    case .ping:
                        try await outbound.write(StreamingClient.pong(frame))
                    case .connectionClose:
                        break receive
                    default:
                        continue
                    }
                }
                group.cancelAll()
                return status
            }
        }
    }

    /// A terminal size as the resize stream carries it.
    static func resizeMessage(_ width: UInt16, _ height: UInt16) -> [UInt8] {
        Array("{\"Width\":\(width),\"Height\":\(height)}\n".utf8)
    }

    /// The exit code a metav1.Status carries: 0 for Success, the ExitCode cause of a
    /// NonZeroExitCode failure, 1 for any other failure (its message printed).
    static func exitCode(fromStatus bytes: [UInt8]) -> Int32 {
        guard let status = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] else {
            if !bytes.isEmpty { write(2, bytes + [10]) }
            return bytes.isEmpty ? 0 : 1
        }
        if status["status"] as? String == "Success" { return 0 }
        let causes = (status["details"] as? [String: Any])?["causes"] as? [[String: Any]] ?? []
        if let cause = causes.first(where: { $0["reason"] as? String == "ExitCode" }),
            let code = (cause["message"] as? String).flatMap({ Int32($0) })
        {
            return code
        }
        write(2, Array(((status["message"] as? String) ?? "the remote command failed").utf8) + [10])
        return 1
    }

    static func write(_ fd: Int32, _ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, bytes.count - offset) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return }
            offset += n
        }
    }

    /// SIGWINCH, as a stream (the signal's default action is replaced while it runs).
    static func windowChanges() -> AsyncStream<Void> {
        AsyncStream { continuation in
            signal(SIGWINCH, SIG_IGN)
            let source = SignalSource(SIGWINCH)
            source.source.setEventHandler { continuation.yield() }
            continuation.onTermination = { _ in source.source.cancel() }
            source.source.resume()
        }
    }
}

/// A dispatch signal source (thread-safe, as dispatch sources are) that a stream's end may cancel.
final class SignalSource: @unchecked Sendable {
    let source: any DispatchSourceSignal
    init(_ signal: Int32) { source = DispatchSource.makeSignalSource(signal: signal) }
}
