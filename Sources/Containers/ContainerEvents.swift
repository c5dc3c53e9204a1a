import Foundation
import Synchronization

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
final class ContainerEventHub: Sendable {
    static let bufferPerSubscriber = 1024
    private struct State {
        var subscribers: [UInt64: AsyncStream<ContainerEvent>.Continuation] = [:]
        var next: UInt64 = 0
        var finished = false
    }
    private let state = Mutex(State())

    func subscribe() -> AsyncStream<ContainerEvent> {
        let (stream, continuation) = AsyncStream.makeStream(
            of: ContainerEvent.self, bufferingPolicy: .bufferingNewest(Self.bufferPerSubscriber))
        let id = state.withLock { s -> UInt64? in
            if s.finished { return nil }
            s.next += 1
            s.subscribers[s.next] = continuation
            return s.next
        }
        guard let id else {
            continuation.finish()
            return stream
        }
        continuation.onTermination = { [weak self] _ in
            _ = self?.state.withLock { $0.subscribers.removeValue(forKey: id) }
        }
        return stream
    }

    func publish(_ event: ContainerEvent) {
        for c in state.withLock({ Array($0.subscribers.values) }) { c.yield(event) }
    }

    /// Ends every stream, now and for later subscribers (the daemon is stopping).
    func finish() {
        let all = state.withLock { s -> [AsyncStream<ContainerEvent>.Continuation] in
            s.finished = true
            return Array(s.subscribers.values)
        }
        for c in all { c.finish() }
    }
}
