import Config
import Errors
import Foundation
import Glibc
import Logging
import Models
import Persistence
import Synchronization

/// Owns the node's images: their persisted records, the content store, the unpacked root
/// filesystems, and the pulls in flight (two clients pulling the same reference share one pull).
/// Layout under `<state_root>/images/`: `blobs/sha256/`, `ingest/`, `metadata/<id>.json`,
/// `rootfs/<chain id>/` (the unpacked image: every layer checked against its diff id),
/// `tmp/` (unpacks in progress).
public actor ImageManager {
    public nonisolated let root: String
    public nonisolated let content: ContentStore
    public nonisolated let progress = PullProgress()
    nonisolated let client: RegistryClient
    nonisolated let maxConcurrentDownloads: Int
    nonisolated let logger: Logger
    var records: [Digest: ImageRecord] = [:]
    let store: JSONRecordStore<ImageRecord>
    var pulls: [String: Task<ImageRecord, Error>] = [:]
    /// Unpacks in flight, by the digests of the (compressed) layers they apply: two images that
    /// claim the same config but bring other layers never share one.
    var unpacks: [Digest: Task<UnpackTiming, Error>] = [:]
    var blockBuilds: [Digest: Task<String, Error>] = [:]
    /// Root filesystems (block image paths) that containers use: kept when their image goes.
    var treesInUse: Set<String>

    /// `treesInUse`: the root filesystems the node's containers use (`ContainerRecord.rootfsImage`).
    public init(
        stateRoot: String, registry: RegistrySettings, treesInUse: Set<String> = [],
        logger: Logger = Logger(label: "cocoon.images")
    ) throws(CocoonError) {
        let root = stateRoot + "/images"
        self.root = root
        self.logger = logger
        self.content = try ContentStore(root: root)
        self.client = RegistryClient(settings: registry, logger: logger)
        self.maxConcurrentDownloads = registry.maxConcurrentDownloads
        for dir in ["metadata", "rootfs", "tmp"] {
            do {
                try FileManager.default.createDirectory(atPath: root + "/" + dir, withIntermediateDirectories: true)
            } catch {
                throw .internalError("cannot create \(root)/\(dir): \(error)")
            }
        }
        // An unpack cut off by a restart is discarded; the blobs it read are still in the store.
        // try?: made just above; unreadable means empty
        for leftover in (try? FileManager.default.contentsOfDirectory(atPath: root + "/tmp")) ?? [] {
            // try?: retried at the next start
            try? FileManager.default.removeItem(atPath: root + "/tmp/" + leftover)
        }
        self.store = JSONRecordStore(
            root: root + "/metadata", layout: .filePerRecord, what: "image", key: { $0.id.hex }, logger: logger)
        self.records = Dictionary(store.loadAll().map { ($0.id, $0) }) { _, last in last }
        self.treesInUse = treesInUse
        let used = Set(records.values.flatMap(\.blobs))
        for blob in content.all() where !used.contains(blob) { content.delete(blob) }
        Self.sweepTrees(records: records, inUse: treesInUse, rootfsDir: root + "/rootfs", logger: logger)
    }

    public func shutdown() async {
        for task in pulls.values { task.cancel() }
        for task in blockBuilds.values { task.cancel() }
        await client.shutdown()
    }

    // MARK: - Queries

    public func list() -> [ImageRecord] {
        records.values.sorted { ($0.repoTags.first ?? $0.idString) < ($1.repoTags.first ?? $1.idString) }
    }

    /// The image a CRI client names: a tag or digest reference (`busybox`, `name@sha256:…`), the
    /// image id (`sha256:…`, or its hex), or a unique id prefix of at least 6 hex digits.
    public func find(_ text: String) -> ImageRecord? {
        let t = text.trimmingSpaces
        // try?: not an id: try it as a reference
        if let d = try? Digest(parsing: t.hasPrefix("sha256:") ? t : "sha256:" + t), let r = records[d] { return r }
        // try?: not a reference: try it as an id prefix
        if let ref = try? ImageReference(parsing: t) {
            let name = ref.description
            if let r = records.values.first(where: { $0.repoTags.contains(name) || $0.repoDigests.contains(name) }) {
                return r
            }
        }
        let hex = t.hasPrefix("sha256:") ? String(t.dropFirst(7)) : t
        if hex.count >= 6, hex.allSatisfy(\.isHexDigit) {
            let matches = records.values.filter { $0.id.hex.hasPrefix(hex.lowercased()) }
            if matches.count == 1 { return matches[0] }
        }
        return nil
    }

    /// Bytes and inodes used under the image store (for kubelet's image GC).
    public nonisolated func usage() -> (bytes: UInt64, inodes: UInt64) {
        DiskUsage.measure(root)
    }

    /// The runtime settings of a stored image's config (user, env, entrypoint, …); nil when the
    /// config has none. A config blob that is missing or does not parse is an error naming the image.
    public nonisolated func config(of id: Digest) throws(CocoonError) -> ImageConfig.Config? {
        let bytes: [UInt8]
        do {
            bytes = try content.read(id, limit: MediaTypes.maxConfigBytes)
        } catch {
            throw .failedPrecondition(
                "image \(id): its config cannot be read (\(error)); pull the image again", cause: error)
        }
        return try DocumentDecoder.decode(ImageConfig.self, from: bytes, what: "image \(id) config").config
    }

    // MARK: - Pull

    /// Pulls `text` (normalized) from its registry; concurrent pulls of the same reference share
    /// one download. Returns the stored image.
    public func pull(_ text: String, credentials: RegistryCredentials = RegistryCredentials()) async throws(CocoonError)
        -> ImageRecord
    {
        let ref = try ImageReference(parsing: text)
        let key = ref.description
        // Only pulls with the same credentials join: an anonymous pull must not ride on another
        // client's authenticated one (AlwaysPullImages relies on that).
        let joinKey = key + " " + credentials.fingerprint
        let task: Task<ImageRecord, Error>
        if let running = pulls[joinKey] {
            task = running
        } else {
            let source = RegistryRepository(client: client, reference: ref, credentials: credentials)
            task = Task { try await self.performPull(ref, from: source) }
            pulls[joinKey] = task
        }
        defer { if pulls[joinKey] == task { pulls[joinKey] = nil } }
        do {
            return try await task.value
        } catch let e as CocoonError {
            throw e
        } catch is CancellationError {
            throw .unavailable("pull of \(key) was cancelled")
        } catch {
            throw .internalError("pull of \(key): \(error)")
        }
    }

    /// Imports every image of an OCI layout (directory or tar) or `docker save` tarball on this
    /// node; `name` names images whose archive gives no full name. Blobs are verified like a pull's.
    public nonisolated func importImage(path: String, name: String?) async throws(CocoonError) -> [ImageRecord] {
        guard path.hasPrefix("/") else { throw .invalidArgument("import: path \"\(path)\" must be absolute") }
        if let name { _ = try ImageReference(parsing: name) }
        let scratch = root + "/tmp/import-\(UInt32.random(in: 0...UInt32.max))"
        // try?: scratch space; swept at the next start
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let archive = try ImportArchive(path: path, name: name, scratch: scratch)
        var imported: [ImageRecord] = []
        for entry in archive.entries {
            do {
                imported.append(
                    try await performPull(entry.name, from: OCILayoutSource(dir: archive.layoutDir, top: entry.top)))
            } catch let e as CocoonError {
                throw e
            } catch {
                throw .internalError("import of \(entry.name): \(error)")
            }
        }
        return imported
    }

    nonisolated func performPull(_ ref: ImageReference, from source: any ImageSource) async throws -> ImageRecord {
        let key = ref.description
        progress.begin(key)
        defer { progress.end(key) }
        let touched = BlobList()
        logger.info("pull started", metadata: ["image": "\(key)"])
        let pullStarted = ContinuousClock.now
        do {
            let record = try await fetchAndStore(ref, from: source, touched: touched)
            logger.info(
                "pull done",
                metadata: [
                    "image": "\(key)", "id": "\(record.id)",
                    "fetch_s": "\(record.fetchSeconds)", "unpack_s": "\(record.unpackSeconds)",
                    "total_s": "\(Self.seconds(since: pullStarted))",
                ])
            return record
        } catch {
            logger.warning("pull failed", metadata: ["image": "\(key)", "error": "\(error)"])
            // Nothing half-stored: blobs this failed pull brought in that no image uses go again.
            await dropUnreferenced(touched.digests)
            throw error
        }
    }

    private nonisolated func fetchAndStore(_ ref: ImageReference, from repo: any ImageSource, touched: BlobList)
        async throws -> ImageRecord
    {
        let key = ref.description
        let started = ContinuousClock.now

        let resolved = try await resolveManifest(ref, from: repo, touched: touched)
        var blobs = resolved.blobs
        let manifest = try Self.decodeManifest(resolved.bytes, key: key)
        touched.add(manifest.config.digest)
        for layer in manifest.layers { touched.add(layer.digest) }
        let config = try await fetchConfig(of: manifest, from: repo, key: key)
        let id = manifest.config.digest
        blobs.append(id)
        blobs += manifest.layers.map(\.digest)
        guard let chain = ChainID.of(config.rootfs.diff_ids) else {
            throw CocoonError.integrity("image \(key) has no layers")
        }

        progress.setLayers(key, manifest.layers)
        let layers = manifest.layers, diffIDs = config.rootfs.diff_ids
        logger.debug("layers start", metadata: ["image": "\(key)", "after_s": "\(Self.seconds(since: started))"])
        let timing = try await unpackOnce(layers, chain: chain) {
            try await self.downloadAndUnpack(layers, diffIDs: diffIDs, from: repo, key: key, chain: chain)
        }

        var record = ImageRecord(
            id: id, repoTags: [], repoDigests: [], manifestDigest: resolved.digest, layers: manifest.layers,
            blobs: blobs, size: 0, user: config.config?.User ?? "", pinned: false, pulledAt: Date(),
            rootfs: timing.rootfs, chainID: chain, fetchSeconds: timing.fetchSeconds,
            unpackSeconds: timing.unpackSeconds)
        logger.debug("layers done", metadata: ["image": "\(key)", "after_s": "\(Self.seconds(since: started))"])
        record.size = blobs.reduce(0) { $0 + (content.size($1) ?? 0) }
        if ref.tag != nil { record.repoTags = [ref.description] }
        record.repoDigests = [ref.with(digest: resolved.topDigest).description]
        let stored = try await register(record)
        await ensureBlockImage(stored.id)
        return stored
    }

    /// Fetches and stores the manifest `ref` names and, when that is an index, the node's platform
    /// manifest it lists; returns the image manifest's bytes and digest, the top document's digest,
    /// and the blobs stored so far.
    private nonisolated func resolveManifest(_ ref: ImageReference, from repo: any ImageSource, touched: BlobList)
        async throws -> (bytes: [UInt8], digest: Digest, topDigest: Digest, blobs: [Digest])
    {
        let key = ref.description
        let top = try await repo.manifest(ref.manifestReference)
        touched.add(top.digest)
        try content.put(top.bytes, digest: top.digest)
        var blobs = [top.digest]
        var manifestBytes = top.bytes
        var manifestDigest = top.digest
        if MediaTypes.indexTypes.contains(top.mediaType) {
            let index = try DocumentDecoder.decode(ImageIndex.self, from: top.bytes, what: "index of \(key)")
            guard let chosen = index.manifest(for: .node) else {
                let offered = index.manifests.compactMap { $0.platform.map { "\($0.os)/\($0.architecture)" } }
                throw CocoonError.notFound(
                    "image \(key) has no linux/amd64 variant (it offers: \(offered.joined(separator: ", ")))")
            }
            let m = try await repo.manifest(chosen.digest.description)
            guard MediaTypes.manifestTypes.contains(m.mediaType) else {
                throw CocoonError.integrity("image \(key): index entry \(chosen.digest) is not an image manifest")
            }
            touched.add(m.digest)
            try content.put(m.bytes, digest: m.digest)
            blobs.append(m.digest)
            manifestBytes = m.bytes
            manifestDigest = m.digest
        }
        return (manifestBytes, manifestDigest, top.digest, blobs)
    }

    /// Decodes an image manifest, refusing one that is not schema 2 or has a layer of an unsupported
    /// media type or a negative size.
    private static func decodeManifest(_ bytes: [UInt8], key: String) throws -> Manifest {
        let manifest = try DocumentDecoder.decode(Manifest.self, from: bytes, what: "manifest of \(key)")
        guard manifest.schemaVersion == 2 else {
            throw CocoonError.integrity("image \(key): manifest schemaVersion \(manifest.schemaVersion) is not 2")
        }
        for layer in manifest.layers {
            guard MediaTypes.layerTypes.contains(layer.mediaType ?? MediaTypes.ociLayer + "+gzip") else {
                throw CocoonError.invalidArgument(
                    "image \(key): layer \(layer.digest) has unsupported media type \(layer.mediaType ?? "")")
            }
            guard layer.size >= 0 else {
                throw CocoonError.integrity("image \(key): layer \(layer.digest) has a negative size")
            }
        }
        return manifest
    }

    /// Fetches and decodes the manifest's image config, refusing one for another platform or whose
    /// diff_ids do not match the manifest's layers one for one.
    private nonisolated func fetchConfig(of manifest: Manifest, from repo: any ImageSource, key: String)
        async throws -> ImageConfig
    {
        let configBytes = try await repo.blobBytes(manifest.config, into: content, limit: MediaTypes.maxConfigBytes)
        let config = try DocumentDecoder.decode(ImageConfig.self, from: configBytes, what: "config of \(key)")
        guard (config.os ?? "linux") == "linux", (config.architecture ?? "amd64") == "amd64" else {
            throw CocoonError.failedPrecondition(
                "image \(key) is built for \(config.os ?? "?")/\(config.architecture ?? "?"); this node runs "
                    + "linux/amd64"
            )
        }
        guard config.rootfs.diff_ids.count == manifest.layers.count else {
            throw CocoonError.integrity(
                "image \(key): config lists \(config.rootfs.diff_ids.count) layers, the manifest "
                    + "\(manifest.layers.count)"
            )
        }
        return config
    }

    /// Stores a pulled image: merges names into an existing record of the same id and moves a tag
    /// away from the image that held it before.
    private func register(_ pulled: ImageRecord) throws(CocoonError) -> ImageRecord {
        var record = records[pulled.id] ?? pulled
        if let before = records[pulled.id] {
            record.rootfs = pulled.rootfs
            record.chainID = pulled.chainID
            if before.rootfs != pulled.rootfs { removeTreeUnlessUsed(before, by: record) }
            record.blobs = Array(Set(record.blobs + pulled.blobs)).sorted()
            record.size = pulled.size
            record.pulledAt = pulled.pulledAt
            record.fetchSeconds = pulled.fetchSeconds
        }
        for tag in pulled.repoTags where !record.repoTags.contains(tag) { record.repoTags.append(tag) }
        for d in pulled.repoDigests where !record.repoDigests.contains(d) { record.repoDigests.append(d) }
        for (otherID, var other) in records where otherID != record.id {
            let before = other.repoTags.count
            other.repoTags.removeAll { pulled.repoTags.contains($0) }
            guard other.repoTags.count != before else { continue }
            if other.repoTags.isEmpty && !other.pinned {
                try delete(otherID)
            } else {
                try save(other)
            }
        }
        try save(record)
        return record
    }

    /// Deletes the unpacked trees and block images that neither an image nor a container uses (an
    /// image removed while its containers ran, or what a crash between steps left).
    static func sweepTrees(records: [Digest: ImageRecord], inUse: Set<String>, rootfsDir: String, logger: Logger) {
        var kept = Set(records.values.flatMap { [$0.rootfs, $0.rootfsImage] })
        for image in inUse {
            kept.insert(image)
            if image.hasSuffix(".erofs") { kept.insert(String(image.dropLast(".erofs".count))) }
        }
        // try?: made at init; unreadable means empty
        for name in (try? FileManager.default.contentsOfDirectory(atPath: rootfsDir)) ?? []
        where !kept.contains(rootfsDir + "/" + name) {
            logger.info("removing an unpacked image nothing uses", metadata: ["dir": "\(name)"])
            // try?: retried at the next sweep
            try? FileManager.default.removeItem(atPath: rootfsDir + "/" + name)
        }
    }

    static func seconds(since start: ContinuousClock.Instant) -> Double {
        (ContinuousClock.now - start).seconds
    }
}

/// The blobs one pull has touched so far (for cleanup when it fails).
final class BlobList: Sendable {
    private let list = Mutex<[Digest]>([])
    func add(_ d: Digest) { list.withLock { $0.append(d) } }
    var digests: [Digest] { list.withLock { $0 } }
}

/// A duration shared between the tasks of one pull.
final class SecondsBox: Sendable {
    private let seconds = Mutex<Double>(0)
    func add(_ s: Double) { seconds.withLock { $0 += s } }
    func set(_ s: Double) { seconds.withLock { $0 = s } }
    var value: Double { seconds.withLock { $0 } }
}
