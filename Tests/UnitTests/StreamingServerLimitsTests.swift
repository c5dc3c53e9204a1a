import Errors
import Foundation
import Glibc
import Models
import Testing

@testable import Streaming

/// The streaming server as a local user who is not the kubelet can reach it: connections that
/// never send their request are closed after the upgrade timeout, and those over the cap are
/// closed as they come, so nobody can hold the daemon's descriptors.
@Suite struct StreamingServerLimitsTests {
    struct NoRuntime: StreamingRuntime {
        func openExec(_ request: ExecRequest) async throws(CocoonError) -> any StreamedProcess {
            throw .unimplemented("test")
        }
        func attach(_ containerID: String, stdin: Bool) async throws(CocoonError) -> any StreamedProcess {
            throw .unimplemented("test")
        }
        func dial(pod: String, port: UInt16) async throws(CocoonError) -> any StreamedPort {
            throw .unimplemented("test")
        }
    }

    /// True when the server closed the connection within `seconds` (a read sees EOF or a reset).
    /// Checked without blocking a thread of the pool the server's tasks need.
    func closedByServer(_ fd: Int32, within seconds: Double) async throws -> Bool {
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        repeat {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&p, 1, 0) > 0 {
                var byte: UInt8 = 0
                return recv(fd, &byte, 1, Int32(MSG_DONTWAIT)) <= 0
            }
            // sleep: a poll pause; the loop checks the condition
            try await Task.sleep(for: .milliseconds(20))
        } while ContinuousClock.now < deadline
        return false
    }

    @Test func silentAndSurplusConnectionsAreClosed() async throws {
        let server = try await StreamingServer.bind(
            .init(upgradeTimeout: .seconds(3), maxConnections: 3), runtime: NoRuntime())
        let port = try #require(Int(server.baseURL.split(separator: ":").last ?? ""))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await server.run() }
            let held = try (0..<3).map { _ in try connectToLoopback(port) }
            defer { for fd in held { close(fd) } }
            // Accepted and counted before the fourth comes (the server accepts once its task runs:
            // other suites running beside this one may hold the pool's threads for a while).
            // sleep: a poll pause; the loop checks the condition
            for _ in 0..<1000 where server.openConnections < 3 { try await Task.sleep(for: .milliseconds(20)) }
            #expect(server.openConnections == 3)
            let surplus = try connectToLoopback(port)
            defer { close(surplus) }
            #expect(try await closedByServer(surplus, within: 2), "a connection over the cap is closed at once")
            for fd in held { #expect(try await !closedByServer(fd, within: 0), "the first three are still open") }
            for fd in held {
                #expect(try await closedByServer(fd, within: 10), "silent connections end at the timeout")
            }
            // sleep: a poll pause; the loop checks the condition
            for _ in 0..<500 where server.openConnections > 0 { try await Task.sleep(for: .milliseconds(20)) }
            #expect(server.openConnections == 0)
            await server.close()
            group.cancelAll()
        }
    }
}
