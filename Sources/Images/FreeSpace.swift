import Errors
import Glibc

/// The free-space floor of the image store: a pull never fills the host's disk, whatever sizes
/// a registry declares or sends.
enum FreeSpace {
    /// Throws when writing `bytes` more to the file system holding `path` would leave less than
    /// `reserve` free; `what` names the write in the error. An unknown free space is not checked
    /// (the write itself then reports ENOSPC).
    static func check(_ path: String, adding bytes: Int64, reserve: Int64, what: String) throws(CocoonError) {
        var fs = statvfs()
        guard statvfs(path, &fs) == 0 else { return }
        let free = Int64(fs.f_bavail) * Int64(fs.f_frsize)
        guard free - bytes >= reserve else {
            throw .failedPrecondition(
                "\(what) would leave less than \(reserve >> 20) MiB free on the image store's file system "
                    + "(\(free >> 20) MiB free)")
        }
    }
}
