import CMounts
import Errors
import Glibc

/// A volume's source on the host, opened as an O_PATH descriptor: its parent directories are
/// resolved (the kubelet's own paths may go through symlinks, never through a /proc magic link),
/// its last component too with `followLast` (the CRI client's volumes: a hostPath may be a
/// symlink, resolved once here, as containerd does) or else refused when it is a symlink. What the
/// descriptor turned out to be, by the kernel's own path for it (not the string that was asked
/// for: a symlink swapped meanwhile changes nothing), is checked against the places no pod may
/// see, and every later walk stays beneath the descriptor.
public struct VolumeSource: ~Copyable {
    public let fd: Int32
    /// The path the kernel has for the opened source (for checks and messages).
    public let path: String
    public let isDirectory: Bool
    /// The source's identity (device and inode), so two requests for the same directory share one bind.
    let device: UInt64
    let inode: UInt64

    /// Opens `hostPath` for `field` (e.g. `mounts[0].host_path`). `forbidden`: directories that
    /// neither the source nor anything above it may be (the daemon's state and run roots); /proc,
    /// /sys and /dev are always forbidden. `followLast`: a symlink as the last component is followed
    /// (copies of the kubelet's files) rather than refused.
    public init(_ hostPath: String, field: String, forbidden: [String], followLast: Bool = false) throws(CocoonError) {
        guard hostPath.hasPrefix("/") else { throw .invalidArgument("\(field) \"\(hostPath)\" must be absolute") }
        let parts = hostPath.split(separator: "/")
        guard !parts.contains("..") else { throw .invalidArgument("\(field) \"\(hostPath)\" must not contain \"..\"") }
        guard let last = parts.last.map(String.init), last != "." else {
            throw .invalidArgument("\(field) \"\(hostPath)\" names no file or directory below /")
        }
        let fd = try Self.openSource(hostPath, parts: parts, last: last, followLast: followLast, field: field)
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
        let path = try Self.kernelPath(of: fd, hostPath, field: field)
        try Self.checkAllowed(path, fd: fd, hostPath, field: field, forbidden: forbidden)
        self.fd = fd
        self.path = path
        self.isDirectory = type == S_IFDIR
        self.device = UInt64(st.st_dev)
        self.inode = UInt64(st.st_ino)
    }

    deinit { close(fd) }

    /// Opens `hostPath` as O_PATH: its parents resolved, its last component followed only if `followLast`.
    private static func openSource(
        _ hostPath: String, parts: [Substring], last: String, followLast: Bool, field: String
    ) throws(CocoonError) -> Int32 {
        let fd: Int32
        if followLast {
            fd = cocoon_open_path_following(hostPath)
        } else {
            let dir = cocoon_open_directory_path("/" + parts.dropLast().joined(separator: "/"))
            guard dir >= 0 else { throw openFailure(-dir, hostPath, field: field) }
            defer { close(dir) }
            fd = cocoon_open_path_nofollow(dir, last)
        }
        guard fd >= 0 else { throw openFailure(-fd, hostPath, field: field) }
        return fd
    }

    /// The error for an open of `hostPath` that failed with errno `code`.
    private static func openFailure(_ code: Int32, _ hostPath: String, field: String) -> CocoonError {
        switch code {
        case ENOENT, ENOTDIR: .notFound("\(field) \(hostPath) does not exist")
        case ELOOP, EXDEV:
            .invalidArgument("\(field) \(hostPath) goes through a /proc magic link; volume sources may not")
        default: .failedPrecondition("\(field) \(hostPath) cannot be opened: \(String(cString: strerror(code)))")
        }
    }

    /// The kernel's path for the open `fd`; closes `fd` when there is none.
    private static func kernelPath(of fd: Int32, _ hostPath: String, field: String) throws(CocoonError) -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let named = cocoon_descriptor_path(fd, &buffer, Int32(buffer.count))
        guard named == 0 else {
            close(fd)
            throw .failedPrecondition(
                "\(field) \(hostPath) has no path on the host (\(String(cString: strerror(-named))))")
        }
        return String(cString: buffer)
    }

    /// Refuses (closing `fd`) a source inside or above a forbidden root, or /proc, /sys or /dev.
    private static func checkAllowed(
        _ path: String, fd: Int32, _ hostPath: String, field: String, forbidden: [String]
    ) throws(CocoonError) {
        for root in (forbidden + ["/proc", "/sys", "/dev"]).map(Self.canonical) {
            let inside = path == root || path.hasPrefix(root + "/")
            let above = root.hasPrefix(path == "/" ? "/" : path + "/")
            if inside || above {
                close(fd)
                throw .invalidArgument(
                    "\(field) \(hostPath) is not allowed (\(inside ? "inside" : "contains") \(root))")
            }
        }
    }

    /// `path` with its symlinks resolved when it exists (a state root under a symlinked directory is
    /// still the directory the kernel names).
    static func canonical(_ path: String) -> String {
        guard let real = realpath(path, nil) else { return path }
        defer { free(real) }
        return String(cString: real)
    }
}
