import Errors
import Foundation
import Glibc
import Synchronization

/// A fresh directory under /tmp for one test's state root.
func temporaryStateRoot() throws -> String {
    let dir = NSTemporaryDirectory() + "cocoon-unit-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

/// Polls `condition` until it holds or `timeout` passes (events are applied by another task).
func eventually(timeout: Duration = .seconds(5), _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(5))  // sleep: the poll pause
    }
    return try await condition()
}

/// A value shared between a test and the fakes it hands out.
final class Shared<Value: Sendable>: Sendable {
    private let value: Mutex<Value>
    init(_ initial: Value) { value = Mutex(initial) }
    func withLock<R>(_ body: (inout Value) -> R) -> R { value.withLock { body(&$0) } }
}

/// A blocking TCP connection to 127.0.0.1:port.
func connectToLoopback(_ port: Int) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = in_port_t(UInt16(port).bigEndian)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    let rc = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    }
    guard fd >= 0, rc == 0 else {
        let code = errno
        if fd >= 0 { close(fd) }
        throw CocoonError.internalError("connect to 127.0.0.1:\(port): errno \(code)")
    }
    return fd
}
