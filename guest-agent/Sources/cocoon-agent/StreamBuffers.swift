import AgentAPI
import CAgentSys
import FoundationEssentials
import Glibc

/// Bytes the host sent for one stream (a process's stdin, a forwarded connection) that the guest
/// side has not taken yet, and the host requests to answer once it has. The host keeps one write in
/// flight per stream, so this holds one request's bytes; more than `limit` is refused.
struct PendingWrite {
    static let limit = 4 << 20

    private var bytes: [UInt8] = []
    private var offset = 0
    private(set) var waiters: [UInt64] = []
    /// Close (or half-close) the fd once everything before is written.
    private(set) var closeRequested = false

    var isEmpty: Bool { offset >= bytes.count }
    var hasWork: Bool { !isEmpty || closeRequested }

    /// Takes a request's bytes: written at once as far as `fd` takes them when nothing is queued
    /// before them (no copy), the rest queued. False when that would exceed the limit.
    mutating func add(_ data: Data, close: Bool, replyTo id: UInt64, writingTo fd: Int32?, socket: Bool) -> Bool {
        guard bytes.count - offset + data.count <= Self.limit else { return false }
        var written = 0
        if let fd, isEmpty {
            // An error stops it here; the flush that follows reports it.
            written = data.withUnsafeBytes { Self.writeNow(fd, $0, socket: socket).written }
        }
        if offset > 0 {
            bytes.removeFirst(offset)
            offset = 0
        }
        if written < data.count { bytes += data[data.index(data.startIndex, offsetBy: written)...] }
        closeRequested = closeRequested || close
        if id != 0 { waiters.append(id) }
        return true
    }

    enum Progress {
        /// Everything written: answer these requests (and close when asked).
        case done(waiters: [UInt64], close: Bool)
        /// The fd is full: wait for POLLOUT.
        case blocked
        case failed(SystemError)
    }

    /// Writes what the fd takes now.
    mutating func flush(_ fd: Int32, socket: Bool) -> Progress {
        if offset < bytes.count {
            let (written, error) = bytes.withUnsafeBytes {
                Self.writeNow(fd, UnsafeRawBufferPointer(rebasing: $0[offset...]), socket: socket)
            }
            offset += written
            if offset < bytes.count {
                return error == EAGAIN || error == EWOULDBLOCK ? .blocked : .failed(SystemError("write", error))
            }
        }
        bytes.removeAll(keepingCapacity: true)
        offset = 0
        let answered = waiters
        waiters = []
        let close = closeRequested
        closeRequested = false
        return .done(waiters: answered, close: close)
    }

    /// Writes as much of `raw` as `fd` takes now (`send` for a socket: no SIGPIPE); how much, and
    /// the errno that stopped it short (EAGAIN: the fd is full).
    private static func writeNow(_ fd: Int32, _ raw: UnsafeRawBufferPointer, socket: Bool) -> (
        written: Int, error: Int32
    ) {
        var done = 0
        while done < raw.count {
            let base = raw.baseAddress.map { $0 + done }
            let n = socket ? cocoon_send(fd, base, UInt(raw.count - done)) : write(fd, base, raw.count - done)
            if n > 0 {
                done += n
            } else if n < 0 && errno == EINTR {
                continue
            } else {
                return (done, n < 0 ? errno : EIO)
            }
        }
        return (done, 0)
    }

    /// Drops what is queued; the requests still waiting, to be answered with an error.
    mutating func abandon() -> [UInt64] {
        bytes = []
        offset = 0
        closeRequested = false
        defer { waiters = [] }
        return waiters
    }
}

/// How many more output bytes a stream may send before the host acknowledges some. A limit of 0
/// means no flow control (a container's own output, which the host writes to its log at once).
struct OutputWindow {
    let limit: Int
    private(set) var unacked = 0

    init(limit: Int) { self.limit = limit }

    /// Bytes that may be read and sent now.
    var room: Int { limit == 0 ? 1 << 16 : max(0, min(1 << 16, limit - unacked)) }

    mutating func sent(_ n: Int) { if limit > 0 { unacked += n } }

    /// The host delivered `n` bytes; a host acknowledging more than was sent is clamped.
    mutating func acked(_ n: UInt64) { unacked = max(0, unacked - Int(clamping: n)) }
}
