import CRIAPI
import Dispatch
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import NIOCore
import NIOWebSocket

/// An exec or attach session from this terminal: stdin to channel 0 (EOF as v5's close of channel
/// 0), stdout and stderr from channels 1 and 2, terminal sizes to channel 4 (at start and on every
/// SIGWINCH), and the result from channel 3. Returns the remote process's exit code.
enum RemoteCommandClient {
    /// Asks the runtime for the URL (Exec or Attach), then runs the session.
    static func run(
        _ global: GlobalOptions, stdin: Bool, tty: Bool,
        url: (Runtime_V1_RuntimeService.Client<HTTP2ClientTransport.Posix>, CallOptions) async throws -> String
    ) async throws -> Int32 {
        let url = try await global.endpoint().withClients { rt, _ in try await url(rt, global.callOptions()) }
        return try await run(url: url, stdin: stdin, tty: tty)
    }

    static func run(url: String, stdin: Bool, tty: Bool) async throws -> Int32 {
        let channel = try await StreamingClient.connect(url, subprotocol: "v5.channel.k8s.io")
        let terminal = tty ? RawTerminal() : nil
        defer { terminal?.restore() }
        return try await channel.executeThenClose { inbound, outbound in
            try await withThrowingTaskGroup(of: Void.self) { group -> Int32 in
                if tty {
                    if let size = RawTerminal.size() { try await outbound.write(resize(size)) }
                    group.addTask {
                        for await _ in windowChanges() {
                            if let size = RawTerminal.size() { try await outbound.write(resize(size)) }
                        }
                    }
                }
                if stdin {
                    group.addTask {
                        for await chunk in DescriptorReader.chunks(0) {
                            try await outbound.write(StreamingClient.frame(channel: 0, chunk))
                        }
                        try await outbound.write(StreamingClient.frame(channel: 255, [0]))
                    }
                }
                var code: Int32 = 0
                receive: for try await frame in inbound {
                    switch frame.opcode {
                    case .binary:
                        var data = frame.unmaskedData
                        guard let channel: UInt8 = data.readInteger() else { continue }
                        let bytes = Array(data.readableBytesView)
                        switch channel {
                        case 1: write(1, bytes)
                        case 2: write(2, bytes)
                        case 3: code = exitCode(fromStatus: bytes)
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
                return code
            }
        }
    }

    static func resize(_ size: (width: UInt16, height: UInt16)) -> WebSocketFrame {
        StreamingClient.frame(channel: 4, Array("{\"Width\":\(size.width),\"Height\":\(size.height)}\n".utf8))
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

    private static func write(_ fd: Int32, _ bytes: [UInt8]) {
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
