import Foundation
import Models
import Spawn
import Synchronization

/// Live progress of the pulls in flight, per image reference: per-layer bytes done and total, and
/// the phase. Written by download loops, read by `ImageStatus` (verbose) so a client such as
/// `cocoonctl pull` can draw progress bars through plain CRI calls.
public final class PullProgress: Sendable {
    public struct Layer: Codable, Sendable, Equatable {
        public var digest: String
        public var total: Int64
        public var done: Int64
    }
    public struct Snapshot: Codable, Sendable, Equatable {
        public var reference: String
        public var phase: String
        public var layers: [Layer]
        public var elapsedSeconds: Double
    }
    private struct Entry {
        var phase: String
        var layers: [Layer]
        var started: ContinuousClock.Instant
    }
    private let state = Mutex<[String: Entry]>([:])

    public init() {}

    func begin(_ ref: String) {
        state.withLock { $0[ref] = Entry(phase: "resolving", layers: [], started: .now) }
    }

    func setLayers(_ ref: String, _ layers: [Descriptor]) {
        state.withLock {
            $0[ref]?.layers = layers.map { Layer(digest: $0.digest.description, total: $0.size, done: 0) }
        }
        phase(ref, "downloading")
    }

    func phase(_ ref: String, _ phase: String) {
        state.withLock { $0[ref]?.phase = phase }
    }

    func add(_ ref: String, layer index: Int, bytes: Int64) {
        state.withLock { s in
            guard var e = s[ref], e.layers.indices.contains(index) else { return }
            e.layers[index].done = max(0, e.layers[index].done + bytes)
            s[ref] = e
        }
    }

    func end(_ ref: String) {
        _ = state.withLock { $0.removeValue(forKey: ref) }
    }

    public func snapshot(_ ref: String) -> Snapshot? {
        state.withLock { s in
            s[ref].map {
                Snapshot(
                    reference: ref, phase: $0.phase, layers: $0.layers,
                    elapsedSeconds: (ContinuousClock.now - $0.started).seconds)
            }
        }
    }
}
