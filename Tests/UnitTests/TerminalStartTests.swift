import Errors
import Foundation
import Glibc
import Models
import Synchronization
import Testing

@testable import Streaming

/// A terminal exec starts with the client's first size even when the client types (and ends its
/// input) before it sends that size: the early input waits for the process, the session's reading
/// does not.
@Suite struct TerminalStartTests {
    /// Records what each exec started with and what its stdin got; the process prints what it got
    /// and exits at the end of its input.
    final class RecordingRuntime: StreamingRuntime {
        let sizes = Mutex<[String]>([])
        let input = Mutex<[UInt8]>([])

        func openExec(_ request: ExecRequest) async throws(CocoonError) -> any StreamedProcess {
            sizes.withLock { $0.append(request.size.map { "\($0.height) \($0.width)" } ?? "none") }
            return Process(runtime: self)
        }
        func attach(_ containerID: String, stdin: Bool) async throws(CocoonError) -> any StreamedProcess {
            throw .unimplemented("test")
        }
        func dial(pod: String, port: UInt16) async throws(CocoonError) -> any StreamedPort {
            throw .unimplemented("test")
        }

        struct Process: StreamedProcess {
            let runtime: RecordingRuntime
            let events: AsyncStream<ProcessStreamEvent>
            let output: AsyncStream<ProcessStreamEvent>.Continuation
            var tty: Bool { true }

            init(runtime: RecordingRuntime) {
                self.runtime = runtime
                (events, output) = AsyncStream.makeStream()
            }
            func write(_ data: [UInt8]) async throws(CocoonError) {
                runtime.input.withLock { $0 += data }
            }
            func closeStdin() async {
                output.yield(.stdout(Array("got \(runtime.input.withLock { $0 }.count) bytes\n".utf8)))
                output.yield(.exit(0))
                output.finish()
            }
            func resize(width: UInt16, height: UInt16) async {}
            func delivered(_ bytes: Int) {}
            func end() async { output.finish() }
        }
    }

    /// A client's binary frame (masked, as a client's must be) carrying `payload` (under 126 bytes).
    static func clientFrame(_ payload: [UInt8]) -> [UInt8] {
        let mask: [UInt8] = [0x11, 0x22, 0x33, 0x44]
        return [0x82, 0x80 | UInt8(payload.count)] + mask
            + payload.enumerated().map { $0.element ^ mask[$0.offset % 4] }
    }

    /// Sends `data` to 127.0.0.1:port and reads until the server closes (on a thread of its own).
    static func exchange(port: Int, _ data: [UInt8]) async throws -> [UInt8] {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(with: Result { try blockingExchange(port: port, data) })
            }
        }
    }

    private static func blockingExchange(port: Int, _ data: [UInt8]) throws -> [UInt8] {
        let fd = try connectToLoopback(port)
        defer { close(fd) }
        var timeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        guard data.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, 0) }) == data.count else {
            throw CocoonError.internalError("send: \(errno)")
        }
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { return received }
            received += buffer[0..<n]
        }
    }

    @Test func inputAndItsEndBeforeTheFirstSizeDoNotHoldTheStartBack() async throws {
        let runtime = RecordingRuntime()
        let server = try await StreamingServer.bind(.init(), runtime: runtime)
        let port = try #require(Int(server.baseURL.split(separator: ":").last ?? ""))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await server.run() }
            let exec = ExecRequest(containerID: "c", command: ["sh"], stdin: true, tty: true)
            let url = try #require(URL(string: try server.url(for: .exec(exec, stdout: true, stderr: false))))
            let upgrade =
                "GET \(url.path) HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                + "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                + "Sec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n"
            let began = ContinuousClock.now
            let reply = try await Self.exchange(
                port: port,
                Array(upgrade.utf8) + Self.clientFrame([0, 0x61]) + Self.clientFrame([255, 0])
                    + Self.clientFrame([4] + Array(#"{"Width":123,"Height":45}"#.utf8)))
            let waited = ContinuousClock.now - began
            #expect(runtime.sizes.withLock { $0 } == ["45 123"], "started with the client's size, waited \(waited)")
            #expect(runtime.input.withLock { $0 } == [0x61], "the early input reached the process")
            #expect(String(decoding: reply, as: UTF8.self).contains("got 1 bytes"), "then its stdin was closed")
            await server.close()
            group.cancelAll()
        }
    }
}
