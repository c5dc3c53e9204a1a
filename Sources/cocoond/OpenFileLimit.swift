import Glibc
import Logging

/// The daemon's descriptor budget: every pod holds several (its agent channel, QEMU's sockets,
/// streaming sessions), so the soft RLIMIT_NOFILE (1024 by default) is raised to the hard limit at
/// start, as containerd's service asks for with LimitNOFILE.
enum OpenFileLimit {
    static func raise(logger: Logger) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
        let before = limit.rlim_cur
        limit.rlim_cur = limit.rlim_max
        if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) != 0 {
            logger.warning("cannot raise the open-file limit", metadata: ["soft": "\(before)", "errno": "\(errno)"])
        } else {
            logger.debug("open-file limit raised", metadata: ["from": "\(before)", "to": "\(limit.rlim_max)"])
        }
    }
}
