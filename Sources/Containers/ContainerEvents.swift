import Foundation

/// A container lifecycle change, as the kubelet's evented PLEG consumes it (GetContainerEvents).
public struct ContainerEvent: Sendable {
    public enum Kind: Sendable { case created, started, stopped, deleted }
    public var kind: Kind
    public var containerID: String
    public var sandboxID: String
    public var atNs: Int64
    /// The record as it was when the event happened (the last one, for `deleted`).
    public var record: ContainerRecord
}

/// Fans container events out to every subscriber. Each subscriber has its own bounded buffer: one
/// that does not read loses its oldest events, never slows the container manager or another reader.
final class ContainerEventHub: @unchecked Sendable {
    static let bufferPerSubscriber = 1024
    private let lock = NSLock()
    private var subscribers: [UInt64: AsyncStream<ContainerEvent>.Continuation] = [:]
    private var next: UInt64 = 0
    private var finished = false

    func subscribe() -> AsyncStream<ContainerEvent> {
        let (stream, continuation) = AsyncStream.makeStream(
            of: ContainerEvent.self, bufferingPolicy: .bufferingNewest(Self.bufferPerSubscriber))
        let id = lock.withLock { () -> UInt64? in
            if finished { return nil }
            next += 1
            subscribers[next] = continuation
            return next
        }
        guard let id else {
            continuation.finish()
            return stream
        }
        continuation.onTermination = { [weak self] _ in
            guard let self else { return }
            _ = self.lock.withLock { self.subscribers.removeValue(forKey: id) }
        }
        return stream
    }

    func publish(_ event: ContainerEvent) {
        for c in lock.withLock({ Array(subscribers.values) }) { c.yield(event) }
    }

    /// Ends every stream, now and for later subscribers (the daemon is stopping).
    func finish() {
        let all = lock.withLock { () -> [AsyncStream<ContainerEvent>.Continuation] in
            finished = true
            return Array(subscribers.values)
        }
        for c in all { c.finish() }
    }
}
