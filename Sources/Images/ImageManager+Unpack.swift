import Config
import Errors
import Foundation
import Glibc
import Logging
import Models
import Persistence
import Synchronization

/// Unpacking a pulled image once per chain of layers, and dropping blobs nothing refers to.
extension ImageManager {
    func dropUnreferenced(_ digests: [Digest]) {
        let used = Set(records.values.flatMap(\.blobs))
        for d in digests where !used.contains(d) { content.delete(d) }
    }

    /// Where an image was unpacked and what it cost: download wall time, and the time spent applying
    /// layers (overlapping the downloads).
    struct UnpackTiming: Sendable {
        var rootfs: String
        var fetchSeconds: Double
        var unpackSeconds: Double
    }

    /// Unpacks a stack of layers once, however many references pull it at the same time. A tree is
    /// reused only when a record that was checked layer by layer holds it (same chain id): a config
    /// digest alone proves nothing about the layers beside it.
    func unpackOnce(
        _ layers: [Descriptor], chain: Digest, work: @escaping @Sendable () async throws -> UnpackTiming
    ) async throws -> UnpackTiming {
        let final = root + "/rootfs/" + chain.hex
        if let existing = records.values.first(where: { $0.chainID == chain && $0.rootfs == final }),
            FileManager.default.fileExists(atPath: final)
        {
            return UnpackTiming(rootfs: final, fetchSeconds: 0, unpackSeconds: existing.unpackSeconds)
        }
        let key = Digest.of(Array(layers.map(\.digest.description).joined(separator: ",").utf8))
        if let running = unpacks[key] { return try await running.value }
        let task = Task { try await work() }
        unpacks[key] = task
        defer { unpacks[key] = nil }
        return try await task.value
    }

    /// Downloads the layers (bounded concurrency) while applying each one, in order, as soon as it
    /// and all below it are stored, each checked against its diff id; then moves the tree into place
    /// under the chain id (or keeps the checked tree another unpack put there first).
    nonisolated func downloadAndUnpack(
        _ layers: [Descriptor], diffIDs: [Digest], from repo: any ImageSource, key: String, chain: Digest
    ) async throws -> UnpackTiming {
        guard diffIDs.count == layers.count else {
            throw CocoonError.integrity("image \(key): \(diffIDs.count) diff ids for \(layers.count) layers")
        }
        let started = ContinuousClock.now
        let final = root + "/rootfs/" + chain.hex
        let scratch = root + "/tmp/\(chain.hex).\(UInt32.random(in: 0...UInt32.max))"
        let content = self.content, progress = self.progress, limit = maxConcurrentDownloads
        let busy = SecondsBox(), fetched = SecondsBox()
        do {
            try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: false)
            chmod(scratch, 0o755)
            let (stored, storedSink) = AsyncStream<Int>.makeStream()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {  // downloads
                    defer { storedSink.finish() }
                    try await Self.downloadLayers(
                        layers, from: repo, into: content, progress: progress, key: key, limit: limit,
                        storedSink: storedSink)
                    fetched.set(Self.seconds(since: started))
                    progress.phase(key, "unpacking")
                }
                group.addTask {  // unpacking, in layer order
                    try await Self.applyLayers(
                        layers, diffIDs: diffIDs, stored: stored, onto: scratch, content: content, busy: busy)
                }
                try await group.waitForAll()
            }
            if FileManager.default.fileExists(atPath: final) {
                // Only a checked unpack of the same chain id puts a tree there: keep it (a pod may use it).
                // try?: scratch space; swept at the next start
                try? FileManager.default.removeItem(atPath: scratch)
            } else if rename(scratch, final) != 0 {
                throw CocoonError.internalError(
                    "cannot move the unpacked image to \(final): \(String(cString: strerror(errno)))")
            }
        } catch {
            // try?: scratch space; swept at the next start
            try? FileManager.default.removeItem(atPath: scratch)
            throw error
        }
        return UnpackTiming(rootfs: final, fetchSeconds: fetched.value, unpackSeconds: busy.value)
    }

    /// Downloads the layers, at most `limit` at a time, yielding each layer's index to `storedSink`
    /// once it is stored.
    private static func downloadLayers(
        _ layers: [Descriptor], from repo: any ImageSource, into content: ContentStore, progress: PullProgress,
        key: String, limit: Int, storedSink: AsyncStream<Int>.Continuation
    ) async throws {
        try await withThrowingTaskGroup(of: Int.self) { downloads in
            var next = 0
            func startNext() {
                let index = next
                next += 1
                downloads.addTask {
                    try await repo.fetchBlob(layers[index], into: content) { n in
                        progress.add(key, layer: index, bytes: n)
                    }
                    return index
                }
            }
            while next < min(limit, layers.count) { startNext() }
            while let done = try await downloads.next() {
                storedSink.yield(done)
                if next < layers.count { startNext() }
            }
        }
    }

    /// Applies the layers onto `scratch` in order, each as soon as it and all below it are stored (as
    /// `stored` announces), checked against its diff id; adds the time spent to `busy`.
    private static func applyLayers(
        _ layers: [Descriptor], diffIDs: [Digest], stored: AsyncStream<Int>, onto scratch: String,
        content: ContentStore, busy: SecondsBox
    ) async throws {
        var unpacker = LayerUnpacker(root: scratch)
        var ready = Set<Int>()
        var next = 0
        for await index in stored {
            ready.insert(index)
            while ready.contains(next) {
                let t0 = ContinuousClock.now
                let stats = try unpacker.apply(
                    layerAt: content.path(layers[next].digest),
                    name: "\(next + 1) of \(layers.count) (\(layers[next].digest))", diffID: diffIDs[next])
                unpacker.maxUnpackedBytes -= stats.bytes  // one budget for the image's layers
                busy.add(Self.seconds(since: t0))
                next += 1
            }
        }
        guard next == layers.count else { throw CancellationError() }
    }
}
