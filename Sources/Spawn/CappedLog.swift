import CSpawn
import Foundation

/// A log file a helper process cannot grow past a limit (a guest that makes the pod's virtiofsd
/// warn on every request must not fill the host's /run): the helper writes into a pipe, and a
/// copier (`head -c LIMIT`) moves at most LIMIT bytes of it into the file, then stops reading. The
/// writer must ignore SIGPIPE (`VMProcess.Launch.ignoreSIGPIPE`): its later writes fail with EPIPE.
/// The copier is a process of its own, so it outlives a daemon restart with the writer, and ends
/// when the writer does (end of input) or at the limit.
public enum CappedLog {
    static let copier = "/usr/bin/head"

    /// Truncates (or creates, 0600) the file at `path` and starts its copier in `cgroupProcs`;
    /// returns the descriptor the writer gets as its output (the caller closes it once the writer
    /// has it) and the copier's pid.
    public static func open(_ path: String, limit: Int, cgroupProcs: [String] = []) throws -> (fd: Int32, copier: Int32)
    {
        let file = Glibc.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard file >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        defer { close(file) }
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        for end in ends { _ = cocoon_set_cloexec(end) }  // the copier gets its end as a kept descriptor
        defer { close(ends[0]) }
        do {
            let pid = try VMProcess.start(
                [copier, "-c", "\(limit)", VMProcess.Launch.path(ofKept: 0)],
                VMProcess.Launch(uid: 0, gid: 0, keep: [ends[0]], output: file, cgroupProcs: cgroupProcs))
            return (ends[1], pid)
        } catch {
            close(ends[1])
            throw error
        }
    }
}
