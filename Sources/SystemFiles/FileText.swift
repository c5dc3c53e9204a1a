import Glibc

/// Small reads and writes ContainerCore (and the guest agent) do everywhere: an fd or a file read to
/// its end (bounded), as text; a control file (cgroup, /proc/sys) written in one go.
public enum FileText {
    /// Writes `value` to an existing control file; returns 0 or the errno.
    public static func write(_ value: String, to file: String) -> Int32 {
        let fd = open(file, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return errno }
        defer { close(fd) }
        let n = value.withCString { Glibc.write(fd, $0, strlen($0)) }
        return n < 0 ? errno : 0
    }

    /// Everything readable from `fd` until EOF, at most `limit` bytes.
    public static func readAll(_ fd: Int32, limit: Int = 4 << 20) -> String {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16384)
        while bytes.count < limit {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, min($0.count, limit - bytes.count)) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            bytes += chunk[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The file's text, or nil when it cannot be opened (`flags` adds e.g. O_NOFOLLOW).
    public static func read(_ path: String, flags: Int32 = 0, limit: Int = 4 << 20) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | flags)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        return readAll(fd, limit: limit)
    }
}
