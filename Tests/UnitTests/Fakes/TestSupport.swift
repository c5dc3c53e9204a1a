import Foundation
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
