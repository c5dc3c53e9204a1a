import CMounts
import Errors
import Glibc

/// A volume's source on the host, opened as an O_PATH descriptor: its parent directories are
/// resolved (the kubelet's own paths may go through symlinks), its last component never is (a
/// symlink there, perhaps planted through another pod's volume, is refused), and what it turned out
/// to be is checked against the places no pod may see.
struct VolumeSource: ~Copyable {
    let fd: Int32
    /// The resolved path (for checks and messages).
    let path: String
    let isDirectory: Bool
    /// The source's identity (device and inode), so two requests for the same directory share one bind.
    let device: UInt64
    let inode: UInt64

    /// Opens `hostPath` for `field` (e.g. `mounts[0].host_path`). `forbidden`: directories that
    /// neither the source nor anything above it may be (the daemon's state and run roots); /proc,
    /// /sys and /dev are always forbidden.
    init(_ hostPath: String, field: String, forbidden: [String]) throws(CocoonError) {
        guard hostPath.hasPrefix("/") else { throw .invalidArgument("\(field) \"\(hostPath)\" must be absolute") }
        let parts = hostPath.split(separator: "/")
        guard !parts.contains("..") else { throw .invalidArgument("\(field) \"\(hostPath)\" must not contain \"..\"") }
        guard let last = parts.last.map(String.init), last != "." else {
            throw .invalidArgument("\(field) \"\(hostPath)\" names no file or directory below /")
        }
        let parentPath = "/" + parts.dropLast().joined(separator: "/")
        guard let real = realpath(parentPath, nil) else {
            throw .notFound("\(field) \(hostPath) does not exist")
        }
        let parent = String(cString: real)
        free(real)
        let dir = cocoon_open_directory_path(parent)
        guard dir >= 0 else { throw .notFound("\(field) \(hostPath) does not exist") }
        defer { close(dir) }
        let fd = cocoon_open_path_nofollow(dir, last)
        guard fd >= 0 else {
            let code: Int32 = -fd
            guard code != ENOENT else { throw .notFound("\(field) \(hostPath) does not exist") }
            throw .failedPrecondition("\(field) \(hostPath) cannot be opened: \(String(cString: strerror(code)))")
        }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            close(fd)
            throw .failedPrecondition("\(field) \(hostPath) cannot be examined")
        }
        let type = st.st_mode & S_IFMT
        guard type == S_IFDIR || type == S_IFREG else {
            close(fd)
            throw .invalidArgument(
                type == S_IFLNK
                    ? "\(field) \(hostPath) is a symlink; volume sources are not followed through one"
                    : "\(field) \(hostPath) is neither a file nor a directory")
        }
        let path = parent == "/" ? "/" + last : parent + "/" + last
        for root in forbidden + ["/proc", "/sys", "/dev"] {
            let inside = path == root || path.hasPrefix(root + "/")
            let above = root.hasPrefix(path == "/" ? "/" : path + "/")
            if inside || above {
                close(fd)
                throw .invalidArgument(
                    "\(field) \(hostPath) is not allowed (\(inside ? "inside" : "contains") \(root))")
            }
        }
        self.fd = fd
        self.path = path
        self.isDirectory = type == S_IFDIR
        self.device = UInt64(st.st_dev)
        self.inode = UInt64(st.st_ino)
    }

    deinit { close(fd) }
}
