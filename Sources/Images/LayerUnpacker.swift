import CArchive
import Errors
import Foundation
import Glibc

/// Applies OCI layer tarballs (gzip, zstd or plain; libarchive detects which) one after another
/// onto a root directory, with OCI whiteouts (`.wh.NAME`, `.wh..wh..opq`), hard links, symlinks,
/// devices, owners, modes and xattrs. A layer is untrusted input: an entry with an absolute path,
/// a `..` component, a path through a symlink, or a hard link leaving the root refuses the whole
/// layer (`CocoonError.hostileLayer`).
public struct LayerUnpacker: Sendable {
    public let root: String
    /// Refuse layers that expand beyond this (decompression bombs); an image's layers share it
    /// (`ImageManager` lowers it by what each layer took).
    public var maxUnpackedBytes: Int64 = 64 << 30
    /// The free space a layer must leave on the file system it is unpacked to, checked before every
    /// 16 MiB it writes: a layer never fills the host's disk.
    public var reserveFreeBytes: Int64 = 512 << 20
    /// The most entries one layer may hold (an inode bomb of empty files fits any byte budget).
    public var maxEntries = 1_000_000

    public init(root: String) {
        self.root = root.hasSuffix("/") ? String(root.dropLast()) : root
    }

    public struct Stats: Sendable, Equatable {
        public var entries = 0
        public var bytes: Int64 = 0
        public var whiteouts = 0
        /// sha256 of the layer's uncompressed tar stream.
        public var diffID: Digest?
    }

    /// Applies one layer file. On error the root may hold part of the layer; callers unpack into a
    /// scratch directory and discard it on failure.
    /// With `diffID`, the uncompressed stream must hash to it (the image config's `rootfs.diff_ids`
    /// entry): a layer whose bytes are not what the config (the image id) says is refused.
    @discardableResult
    public func apply(layerAt path: String, name: String? = nil, diffID: Digest? = nil) throws(CocoonError) -> Stats {
        let label = name ?? path
        let stream = try DecompressedLayer(path: path, label: label)
        guard let reader = archive_read_new() else { throw .internalError("libarchive: out of memory") }
        defer { archive_read_free(reader) }
        archive_read_support_format_tar(reader)
        guard stream.open(reader) == ARCHIVE_OK else {
            throw stream.failure ?? .integrity("layer \(label): \(Self.message(reader))")
        }
        var stats = try extract(reader, label: label, stream: stream)
        stats.diffID = try stream.drainAndDigest()
        if let diffID, stats.diffID != diffID {
            throw .integrity(
                "layer \(label): its uncompressed content has digest \(stats.diffID?.description ?? "?"), but the "
                    + "image config's diff_ids say \(diffID): the layer is not the one the image id names")
        }
        return stats
    }

    private func extract(_ reader: OpaquePointer, label: String, stream: DecompressedLayer) throws(CocoonError)
        -> Stats
    {
        guard let writer = archive_write_disk_new() else { throw .internalError("libarchive: out of memory") }
        defer { archive_write_free(writer) }
        let flags =
            ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_OWNER | ARCHIVE_EXTRACT_XATTR
            | ARCHIVE_EXTRACT_UNLINK | ARCHIVE_EXTRACT_SECURE_NODOTDOT
        archive_write_disk_set_options(writer, Int32(flags))

        var stats = Stats()
        var touched = Set<String>()  // paths this layer wrote, and their ancestors
        var seen = 0  // headers read, the root's included
        var entry: OpaquePointer?
        while true {
            let r = archive_read_next_header(reader, &entry)
            if r == ARCHIVE_EOF { break }
            guard r >= ARCHIVE_WARN, let entry else {
                throw stream.failure ?? .integrity("layer \(label): \(Self.message(reader))")
            }
            seen += 1
            guard seen <= maxEntries else {
                throw .hostileLayer("layer \(label): more than \(maxEntries) entries")
            }
            guard let rawC = archive_entry_pathname(entry) else {
                throw .hostileLayer("layer \(label): an entry has no path")
            }
            let raw = String(cString: rawC)
            guard let rel = try Self.clean(raw, layer: label) else { continue }  // the root itself
            stats.entries += 1
            if try applyWhiteout(rel: rel, raw: raw, touched: touched, layer: label) {
                stats.whiteouts += 1
                continue
            }
            guard try writeEntry(entry, rel: rel, raw: raw, reader: reader, writer: writer, stats: &stats, layer: label)
            else { continue }
            var prefix = ""
            for c in rel.split(separator: "/") {
                prefix += prefix.isEmpty ? String(c) : "/" + c
                touched.insert(prefix)
            }
        }
        // Directory modes and times are applied at close (so read-only dirs could be filled first).
        guard archive_write_close(writer) >= ARCHIVE_WARN else {
            throw .internalError("layer \(label): \(Self.message(writer))")
        }
        return stats
    }

    /// Applies `rel` when it is an OCI whiteout (opaque `.wh..wh..opq` or `.wh.NAME`); false for any other entry.
    private func applyWhiteout(rel: String, raw: String, touched: Set<String>, layer label: String)
        throws(CocoonError) -> Bool
    {
        let base = rel.split(separator: "/").last.map(String.init) ?? rel
        let parent = rel.contains("/") ? String(rel[..<(rel.lastIndex(of: "/") ?? rel.endIndex)]) : ""

        if base == ".wh..wh..opq" {
            try checkParents(of: rel, layer: label)
            try makeOpaque(parent, keeping: touched, layer: label)
            return true
        }
        if base.hasPrefix(".wh.") {
            let victim = (parent.isEmpty ? "" : parent + "/") + String(base.dropFirst(4))
            guard let cleanVictim = try Self.clean(victim, layer: label), !cleanVictim.isEmpty else {
                throw .hostileLayer("layer \(label): whiteout \"\(raw)\" names no file")
            }
            try checkParents(of: cleanVictim, layer: label)
            removeTree(root + "/" + cleanVictim)
            return true
        }
        return false
    }

    /// Writes one file, directory, link or device entry at `rel` under the root, counting its bytes;
    /// false for an entry of a type that is skipped.
    private func writeEntry(
        _ entry: OpaquePointer, rel: String, raw: String, reader: OpaquePointer, writer: OpaquePointer,
        stats: inout Stats, layer label: String
    ) throws(CocoonError) -> Bool {
        let type = archive_entry_filetype(entry)
        let isHardlink = archive_entry_hardlink(entry) != nil
        guard isHardlink || [S_IFREG, S_IFDIR, S_IFLNK, S_IFCHR, S_IFBLK, S_IFIFO].contains(type) else { return false }
        try checkParents(of: rel, layer: label, creatingMissing: true)
        if let linkC = archive_entry_hardlink(entry) {
            try redirectHardlink(entry, linkRaw: String(cString: linkC), raw: raw, layer: label)
        }
        prepareFinal(rel, isDir: type == S_IFDIR && !isHardlink)
        filterXattrs(entry)
        archive_entry_copy_pathname(entry, root + "/" + rel)
        try countBytes(of: entry, into: &stats, layer: label)
        let wr = archive_write_header(writer, entry)
        guard wr >= ARCHIVE_WARN else {
            throw .hostileLayer("layer \(label): cannot write \"\(raw)\": \(Self.message(writer))")
        }
        if archive_entry_size(entry) > 0 && !isHardlink {
            try copyData(reader, writer, entry: raw, layer: label)
        }
        guard archive_write_finish_entry(writer) >= ARCHIVE_WARN else {
            throw .internalError("layer \(label): finishing \"\(raw)\": \(Self.message(writer))")
        }
        return true
    }

    /// Points a hard-link entry at its target inside the root; the target must be a non-directory the
    /// root already holds, reached through no symlink.
    private func redirectHardlink(_ entry: OpaquePointer, linkRaw: String, raw: String, layer label: String)
        throws(CocoonError)
    {
        guard let target = try Self.clean(linkRaw, layer: label), !target.isEmpty else {
            throw .hostileLayer("layer \(label): hard link \"\(raw)\" points at the root")
        }
        try checkParents(of: target, layer: label)
        var st = stat()
        guard lstat(root + "/" + target, &st) == 0, (st.st_mode & S_IFMT) != S_IFDIR else {
            throw .hostileLayer(
                "layer \(label): hard link \"\(raw)\" → \"\(linkRaw)\" "
                    + "has no file to link to inside the layer")
        }
        archive_entry_copy_hardlink(entry, root + "/" + target)
    }

    /// Adds the entry's size to the layer's byte count, refusing a layer beyond `maxUnpackedBytes`, and
    /// checks free space at the first entry, at each 16 MiB crossed, and before any entry over 16 MiB.
    private func countBytes(of entry: OpaquePointer, into stats: inout Stats, layer label: String)
        throws(CocoonError)
    {
        let before = stats.bytes
        stats.bytes += max(0, archive_entry_size(entry))
        if stats.bytes > maxUnpackedBytes {
            throw .hostileLayer("layer \(label) expands beyond \(maxUnpackedBytes) bytes")
        }
        if before == 0 || stats.bytes >> 24 != before >> 24 || archive_entry_size(entry) > 16 << 20 {
            try checkFreeSpace(for: archive_entry_size(entry), layer: label)
        }
    }

    /// The entry's path relative to the root, or nil for the root itself. Absolute paths and `..`
    /// components are hostile.
    static func clean(_ raw: String, layer: String) throws(CocoonError) -> String? {
        if raw.hasPrefix("/") { throw .hostileLayer("layer \(layer): absolute path \"\(raw)\" refused") }
        var parts: [Substring] = []
        for c in raw.split(separator: "/", omittingEmptySubsequences: true) {
            if c == "." { continue }
            if c == ".." { throw .hostileLayer("layer \(layer): path \"\(raw)\" escapes the root with ..") }
            parts.append(c)
        }
        return parts.isEmpty ? nil : parts.joined(separator: "/")
    }

    /// No existing ancestor of `rel` inside the root may be a symlink (or a non-directory).
    /// With `creatingMissing`, a parent the layer does not list is made as Docker and containerd
    /// make it (root's, 0755), whatever the daemon's umask (libarchive would apply it).
    private func checkParents(of rel: String, layer: String, creatingMissing: Bool = false) throws(CocoonError) {
        let comps = rel.split(separator: "/")
        var path = root
        for c in comps.dropLast() {
            path += "/" + c
            var st = stat()
            if lstat(path, &st) != 0 {
                guard creatingMissing else { return }  // missing: nothing below it to check
                guard mkdir(path, 0o755) == 0, chmod(path, 0o755) == 0 else {
                    throw .internalError("layer \(layer): cannot create \(path): \(String(cString: strerror(errno)))")
                }
                continue
            }
            let kind = st.st_mode & S_IFMT
            if kind == S_IFLNK {
                throw .hostileLayer(
                    "layer \(layer): \"\(rel)\" goes through the symlink \"\(path.dropFirst(root.count + 1))\"")
            }
            if kind != S_IFDIR {
                throw .hostileLayer(
                    "layer \(layer): \"\(rel)\" has a non-directory parent \"\(path.dropFirst(root.count + 1))\"")
            }
        }
    }

    /// Clears whatever a lower layer left at `rel` that this entry replaces: symlinks are never
    /// followed, a file replaces a directory, a directory stays a directory.
    private func prepareFinal(_ rel: String, isDir: Bool) {
        let path = root + "/" + rel
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        let kind = st.st_mode & S_IFMT
        if kind == S_IFDIR { if !isDir { removeTree(path) } } else { unlink(path) }
    }

    /// `.wh..wh..opq`: everything lower layers put in `dir` disappears; this layer's entries stay.
    private func makeOpaque(_ dir: String, keeping touched: Set<String>, layer: String) throws(CocoonError) {
        let path = dir.isEmpty ? root : root + "/" + dir
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        guard (st.st_mode & S_IFMT) == S_IFDIR else {
            throw .hostileLayer("layer \(layer): opaque whiteout in \"\(dir)\", which is not a directory")
        }
        // try?: not a directory: nothing inside to fix
        for child in (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [] {
            let rel = dir.isEmpty ? child : dir + "/" + child
            if !touched.contains(rel) { removeTree(path + "/" + child) }
        }
    }

    /// Removes a path without following symlinks (the link itself goes).
    private func removeTree(_ path: String) {
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            // try?: a path already gone is what the whiteout wants
            try? FileManager.default.removeItem(atPath: path)
        } else {
            unlink(path)
        }
    }

    /// `trusted.*` xattrs (overlayfs' own metadata) are dropped: a layer must not steer the overlay.
    private func filterXattrs(_ entry: OpaquePointer) {
        guard archive_entry_xattr_reset(entry) > 0 else { return }
        var kept: [(String, [UInt8])] = []
        var dropped = false
        var name: UnsafePointer<CChar>?
        var value: UnsafeRawPointer?
        var size = 0
        while archive_entry_xattr_next(entry, &name, &value, &size) == ARCHIVE_OK {
            guard let name else { continue }
            let n = String(cString: name)
            if n.hasPrefix("trusted.") {
                dropped = true
                continue
            }
            let bytes = value.map { [UInt8](UnsafeRawBufferPointer(start: $0, count: size)) } ?? []
            kept.append((n, bytes))
        }
        guard dropped else { return }
        archive_entry_xattr_clear(entry)
        for (n, v) in kept { v.withUnsafeBytes { archive_entry_xattr_add_entry(entry, n, $0.baseAddress, $0.count) } }
    }

    private func copyData(_ reader: OpaquePointer, _ writer: OpaquePointer, entry: String, layer: String)
        throws(CocoonError)
    {
        var buf: UnsafeRawPointer?
        var size = 0
        var offset: la_int64_t = 0
        while true {
            let r = archive_read_data_block(reader, &buf, &size, &offset)
            if r == ARCHIVE_EOF { return }
            guard r >= ARCHIVE_WARN else {
                throw .integrity("layer \(layer): reading \"\(entry)\": \(Self.message(reader))")
            }
            guard archive_write_data_block(writer, buf, size, offset) >= ARCHIVE_WARN else {
                throw .internalError("layer \(layer): writing \"\(entry)\": \(Self.message(writer))")
            }
        }
    }

    /// Refuses to write `bytes` more when that would leave less than `reserveFreeBytes` free.
    private func checkFreeSpace(for bytes: Int64, layer: String) throws(CocoonError) {
        try FreeSpace.check(root, adding: bytes, reserve: reserveFreeBytes, what: "layer \(layer): unpacking it")
    }

    static func message(_ a: OpaquePointer) -> String {
        archive_error_string(a).map { String(cString: $0) } ?? "libarchive error \(archive_errno(a))"
    }
}
