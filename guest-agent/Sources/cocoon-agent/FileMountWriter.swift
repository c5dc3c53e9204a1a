import AgentAPI
import AgentService
import FoundationEssentials
import Glibc

/// Recreates a host file or directory tree the host sent with a container (CRI mounts such as
/// /etc/hosts, resolv.conf, secrets and config maps) under the container's directory. Entry paths
/// are relative and may not climb out (`..`, absolute paths).
enum FileMountWriter {
    /// Writes the tree under `base` and returns what to bind-mount: `base` itself for a directory,
    /// `base/file` when the mount is a single file.
    static func write(_ mount: Cocoon_Agent_V4_FileMount, into base: String) throws(AgentFailure) -> String {
        guard mount.destination.hasPrefix("/") else {
            throw .invalid("mount destination \"\(mount.destination)\" must be absolute")
        }
        let rootEntry = mount.entries.first { $0.path.isEmpty }
        if let rootEntry, (rootEntry.mode & UInt32(S_IFMT)) != UInt32(S_IFDIR) {
            mkdirs(base)
            try writeEntry(rootEntry, at: base + "/file")
            return base + "/file"
        }
        mkdirs(base)
        for entry in mount.entries where !entry.path.isEmpty {
            let parts = entry.path.split(separator: "/")
            guard !entry.path.hasPrefix("/"), !parts.contains(where: { $0 == ".." || $0 == "." }) else {
                throw .invalid("mount \(mount.destination): entry path \"\(entry.path)\" is not a plain relative path")
            }
            if parts.count > 1 { mkdirs(base + "/" + parts.dropLast().joined(separator: "/")) }
            try writeEntry(entry, at: base + "/" + entry.path)
        }
        if let rootEntry { chmod(base, mode_t(rootEntry.mode & 0o7777)) }
        return base
    }

    private static func writeEntry(_ entry: Cocoon_Agent_V4_FileEntry, at path: String) throws(AgentFailure) {
        let type = entry.mode & UInt32(S_IFMT)
        let perm = mode_t(entry.mode & 0o7777)
        if type == UInt32(S_IFDIR) {
            mkdir(path, perm)
        } else if type == UInt32(S_IFLNK) {
            let target = String(decoding: entry.data, as: UTF8.self)
            if symlink(target, path) != 0 { throw .internal("symlink \(path): \(SystemError("symlink"))") }
        } else {
            let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, perm)
            guard fd >= 0 else { throw .internal("create \(path): \(SystemError("open"))") }
            defer { close(fd) }
            let bytes = [UInt8](entry.data)
            var offset = 0
            while offset < bytes.count {
                let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, bytes.count - offset) }
                guard n > 0 else { throw .internal("write \(path): \(SystemError("write"))") }
                offset += n
            }
            fchmod(fd, perm)
        }
    }
}
