import Errors
import Foundation
import Glibc

/// An OCI image layout on disk (`oci-layout`, `index.json`, `blobs/sha256/…`) read as an image
/// source for `image import`. `top` is the index.json entry being imported. Files are untrusted
/// like registry bytes: every blob is verified against its digest and size while it is copied.
struct OCILayoutSource: ImageSource {
    let dir: String
    let top: Descriptor

    func manifest(_ tagOrDigest: String) async throws(CocoonError) -> (
        bytes: [UInt8], mediaType: String, digest: Digest
    ) {
        let wanted = tagOrDigest.hasPrefix("sha256:") ? try Digest(parsing: tagOrDigest) : top.digest
        let bytes = try readBlob(wanted, limit: MediaTypes.maxManifestBytes)
        let type = DocumentDecoder.mediaType(of: bytes) ?? (wanted == top.digest ? top.mediaType : nil) ?? ""
        guard MediaTypes.indexTypes.contains(type) || MediaTypes.manifestTypes.contains(type) else {
            throw .invalidArgument("\(dir): \(wanted) is not an image manifest or index (media type \"\(type)\")")
        }
        return (bytes, type, wanted)
    }

    func fetchBlob(_ d: Descriptor, into store: ContentStore, progress: @Sendable (Int64) -> Void)
        async throws(CocoonError)
    {
        if store.has(d.digest, size: d.size) {
            progress(d.size)
            return
        }
        let path = blobPath(d.digest)
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { throw .notFound("\(dir): blob \(d.digest) is missing from the layout") }
        defer { close(fd) }
        let writer = try store.writer(digest: d.digest, expectedSize: d.size)
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        do throws(CocoonError) {
            while true {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                guard n >= 0 else { throw .internalError("reading \(path): \(String(cString: strerror(errno)))") }
                if n == 0 { break }
                try writer.append(Array(buffer[0..<n]))
                progress(Int64(n))
            }
            try writer.commit()
        } catch {
            writer.abort()
            throw error
        }
    }

    func blobPath(_ d: Digest) -> String { dir + "/blobs/sha256/" + d.hex }

    private func readBlob(_ d: Digest, limit: Int) throws(CocoonError) -> [UInt8] {
        var st = stat()
        guard lstat(blobPath(d), &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            throw .notFound("\(dir): blob \(d) is missing from the layout")
        }
        guard st.st_size <= limit, let data = FileManager.default.contents(atPath: blobPath(d)) else {
            throw .integrity("\(dir): blob \(d) is larger than \(limit) bytes")
        }
        let bytes = [UInt8](data)
        guard Digest.of(bytes) == d else { throw .integrity("\(dir): blob \(d) does not match its digest") }
        return bytes
    }
}

/// Reads archives users import (`cocoonctl image import`): an OCI image layout directory, or a tar
/// (optionally compressed) of one, or a `docker save` tarball (its legacy `manifest.json` is turned
/// into an OCI layout first). Says which images it holds and under which names.
struct ImportArchive {
    struct Entry {
        var name: ImageReference
        var top: Descriptor
    }
    let layoutDir: String
    let entries: [Entry]

    /// Opens `path`; tar files are extracted (safely, like layers) into `scratch`. A directory is
    /// only read: a `docker save` one is converted into `scratch`, never written to.
    init(path: String, name: String?, scratch: String) throws(CocoonError) {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw .notFound("import: \(path) does not exist")
        }
        func makeScratch() throws(CocoonError) {
            do { try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true) } catch {
                throw .internalError("import: cannot create \(scratch): \(error)")
            }
        }
        var dir = path
        if !isDir.boolValue {
            try makeScratch()
            try LayerUnpacker(root: scratch).apply(layerAt: path, name: path)
            dir = scratch
        }
        let fm = FileManager.default
        if !fm.fileExists(atPath: dir + "/index.json") && fm.fileExists(atPath: dir + "/manifest.json") {
            if dir != scratch { try makeScratch() }
            try Self.convertDockerSave(from: dir, into: scratch)
            dir = scratch
        }
        guard fm.fileExists(atPath: dir + "/index.json") else {
            throw .invalidArgument(
                "import: \(path) is neither an OCI image layout (index.json) nor a docker save tarball (manifest.json)")
        }
        let indexBytes = [UInt8](fm.contents(atPath: dir + "/index.json") ?? Data())
        let index = try DocumentDecoder.decode(ImageIndex.self, from: indexBytes, what: "\(path): index.json")
        let base = name ?? "import/" + Self.baseName(path)
        var entries: [Entry] = []
        for d in index.manifests {
            let refName =
                d.annotations?["io.containerd.image.name"] ?? d.annotations?["org.opencontainers.image.ref.name"]
            let text: String
            switch refName {
            case .some(let r) where r.contains("/") || r.contains("@"): text = r
            case .some(let tag): text = Self.withoutTag(base) + ":" + tag
            case .none: text = base
            }
            entries.append(Entry(name: try ImageReference(parsing: text), top: d))
        }
        guard !entries.isEmpty else { throw .invalidArgument("import: \(path) holds no images") }
        self.layoutDir = dir
        self.entries = entries
    }

    static func baseName(_ path: String) -> String {
        var b = path.split(separator: "/").last.map(String.init) ?? "image"
        for ext in [".tar.gz", ".tgz", ".tar.zst", ".tar"] where b.hasSuffix(ext) { b = String(b.dropLast(ext.count)) }
        let cleaned = b.lowercased().map { $0.isLetter || $0.isNumber ? $0 : "-" }
        let s = String(cleaned).trimmingCharacters(in: CharacterSet(charactersIn: "-"))
        return s.isEmpty ? "image" : s
    }

    static func withoutTag(_ name: String) -> String {
        guard let colon = name.lastIndex(of: ":"), !name[colon...].contains("/") else { return name }
        return String(name[..<colon])
    }

    /// `docker save` (legacy): manifest.json lists Config, RepoTags and Layers (uncompressed tars)
    /// by path. Each file is hashed into `out`/blobs/sha256/ (linked when `out` is `dir`, copied
    /// otherwise), and an OCI manifest and index.json written into `out`.
    static func convertDockerSave(from dir: String, into out: String) throws(CocoonError) {
        struct DockerEntry: Decodable {
            var Config: String
            var RepoTags: [String]?
            var Layers: [String]
        }
        let bytes = [UInt8](FileManager.default.contents(atPath: dir + "/manifest.json") ?? Data())
        let entries = try DocumentDecoder.decode([DockerEntry].self, from: bytes, what: "docker save manifest.json")
        let blobs = out + "/blobs/sha256"
        do { try FileManager.default.createDirectory(atPath: blobs, withIntermediateDirectories: true) } catch {
            throw .internalError("import: \(error)")
        }
        var index: [[String: Any]] = []
        for e in entries {
            var config = try storeDockerFile(e.Config, from: dir, into: out, blobs: blobs)
            config.mediaType = MediaTypes.ociConfig
            var layers: [[String: Any]] = []
            for l in e.Layers {
                let d = try storeDockerFile(l, from: dir, into: out, blobs: blobs)
                layers.append(["mediaType": MediaTypes.ociLayer, "digest": d.digest.description, "size": d.size])
            }
            let (mdigest, size) = try writeDockerManifest(config: config, layers: layers, blobs: blobs)
            for tag in e.RepoTags ?? [""] {
                var d: [String: Any] = [
                    "mediaType": MediaTypes.ociManifest, "digest": mdigest.description, "size": size,
                ]
                if !tag.isEmpty { d["annotations"] = ["io.containerd.image.name": tag] }
                index.append(d)
            }
        }
        do {
            let data = try JSONSerialization.data(
                withJSONObject: ["schemaVersion": 2, "manifests": index], options: [.sortedKeys])
            guard FileManager.default.createFile(atPath: out + "/index.json", contents: data) else {
                throw CocoonError.internalError("import: cannot write \(out)/index.json")
            }
        } catch let error as CocoonError {
            throw error
        } catch {
            throw .internalError("import: \(error)")
        }
    }

    /// Places one file a `docker save` manifest.json names (`rel`, inside `dir`) into `blobs` under its
    /// digest, following a symlink only when it stays inside the archive.
    private static func storeDockerFile(_ rel: String, from dir: String, into out: String, blobs: String)
        throws(CocoonError) -> Descriptor
    {
        guard let clean = try LayerUnpacker.clean(rel, layer: "manifest.json"), !clean.isEmpty else {
            throw .hostileLayer("docker save manifest.json names \"\(rel)\"")
        }
        let path = dir + "/" + clean
        var st = stat()
        guard lstat(path, &st) == 0 else { throw .notFound("docker save: \(rel) is missing") }
        if (st.st_mode & S_IFMT) == S_IFLNK {  // identical layers are symlinked to one another
            guard let real = realpath(path, nil), let realDir = realpath(dir, nil) else {
                throw .notFound("docker save: \(rel) is a dangling symlink")
            }
            defer {
                free(real)
                free(realDir)
            }
            let r = String(cString: real), d = String(cString: realDir)
            guard r.hasPrefix(d + "/") else {
                throw .hostileLayer("docker save: \(rel) is a symlink that leaves the archive")
            }
            return try storeDockerFile(String(r.dropFirst(d.count + 1)), from: dir, into: out, blobs: blobs)
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw .invalidArgument("docker save: \(rel) is not a file") }
        let digest = try hashFile(path)
        let target = blobs + "/" + digest.hex
        if !FileManager.default.fileExists(atPath: target) {
            // try?: both failing is reported just below
            guard
                (out == dir && link(path, target) == 0)
                    || (try? FileManager.default.copyItem(atPath: path, toPath: target)) != nil
            else {
                throw .internalError("import: cannot place \(rel)")
            }
        }
        return Descriptor(mediaType: nil, digest: digest, size: Int64(st.st_size))
    }

    /// Writes the OCI manifest for a converted `docker save` image into `blobs`; returns its digest and size.
    private static func writeDockerManifest(config: Descriptor, layers: [[String: Any]], blobs: String)
        throws(CocoonError) -> (digest: Digest, size: Int)
    {
        let manifest: [String: Any] = [
            "schemaVersion": 2, "mediaType": MediaTypes.ociManifest,
            "config": [
                "mediaType": MediaTypes.ociConfig, "digest": config.digest.description, "size": config.size,
            ],
            "layers": layers,
        ]
        let data: Data
        do { data = try JSONSerialization.data(withJSONObject: manifest, options: [.sortedKeys]) } catch {
            throw .internalError("import: \(error)")
        }
        let mdigest = Digest.of([UInt8](data))
        guard FileManager.default.createFile(atPath: blobs + "/" + mdigest.hex, contents: data) else {
            throw .internalError("import: cannot write the manifest into \(blobs)")
        }
        return (mdigest, data.count)
    }

    static func hashFile(_ path: String) throws(CocoonError) -> Digest {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { throw .internalError("import: cannot open \(path)") }
        defer { close(fd) }
        var hasher = SHA256Stream()
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw .internalError("import: reading \(path) failed") }
            if n == 0 { break }
            buffer.withUnsafeBytes { hasher.update(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
        }
        return hasher.finalize()
    }
}
