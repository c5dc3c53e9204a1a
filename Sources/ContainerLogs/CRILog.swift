import FoundationEssentials
import Glibc

/// The CRI container log format, `<RFC3339Nano> <stdout|stderr> <P|F> <text>`, written by the
/// daemon for a VM's containers and by a native pod's agent for its own (`CRILogWriter`), and read
/// back by `cocoonctl logs` (`CRILogReader`). Foundation-free, as the agent links it.
public enum CRILog {
    public enum Stream: String, Sendable, Equatable { case stdout, stderr }
    /// F: the line ends here; P: a piece of a longer (or unterminated) line.
    enum Tag: String { case full = "F", partial = "P" }
    /// Longer lines are written in P pieces of this size.
    public static let maxLine = 16 * 1024

    /// What starts every line: `<stamp> <stream> <tag> `.
    static func prefix(_ stamp: String, _ stream: Stream, _ tag: Tag) -> [UInt8] {
        Array("\(stamp) \(stream.rawValue) \(tag.rawValue) ".utf8)
    }

    /// UTC with nine fractional digits, as containerd writes it.
    static func timestamp() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var t = ts.tv_sec
        var tmv = tm()
        gmtime_r(&t, &tmv)
        let date = [padded(Int(tmv.tm_year) + 1900, 4), padded(Int(tmv.tm_mon) + 1, 2), padded(Int(tmv.tm_mday), 2)]
        let time = [padded(Int(tmv.tm_hour), 2), padded(Int(tmv.tm_min), 2), padded(Int(tmv.tm_sec), 2)]
        return date.joined(separator: "-") + "T" + time.joined(separator: ":") + "." + padded(Int(ts.tv_nsec), 9) + "Z"
    }

    /// `value` in decimal, zero-padded on the left to `width` digits.
    static func padded(_ value: Int, _ width: Int) -> String {
        let digits = String(value)
        return digits.count >= width ? digits : String(repeating: "0", count: width - digits.count) + digits
    }

    /// Creates the missing directories of `dir` (0755, as containerd makes a log's directories,
    /// whatever the umask); false when one cannot be made.
    static func ensureDirectories(_ dir: String) -> Bool {
        var current = ""
        for component in dir.split(separator: "/") {
            current += "/" + component
            if mkdir(current, 0o755) == 0 {
                guard chmod(current, 0o755) == 0 else { return false }
            } else if errno != EEXIST {
                return false
            }
        }
        return true
    }
}

/// Writes one container's output in the CRI log format: a full line is tagged F; a line longer than
/// `CRILog.maxLine`, or output left unterminated when the process ends, is written in P pieces.
/// `reopen` follows a log rotation. Owned by the container manager (one per container).
public final class CRILogWriter {
    public let path: String
    /// Reopen by itself when the path no longer names the open file (the kubelet renamed it away
    /// to rotate it, and a new one may be there): for a writer that no ReopenContainerLog reaches.
    public let followsPath: Bool
    private var fd: Int32 = -1
    private var pending: [CRILog.Stream: [UInt8]] = [.stdout: [], .stderr: []]

    public init(path: String, followsPath: Bool = false) {
        self.path = path
        self.followsPath = followsPath
        reopen()
    }

    /// Creates the log file (and its directories) as a writer would, so that it exists at once after
    /// a rotation, also before its writer (a native pod's agent) writes again.
    public static func create(_ path: String) { _ = CRILogWriter(path: path) }

    deinit { if fd >= 0 { close(fd) } }

    /// Opens the file again (after the kubelet rotated it); a file that cannot be opened drops
    /// output until the next reopen, as the process must not block on its log.
    public func reopen() {
        if fd >= 0 { close(fd) }
        let dir = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? "."
        // As containerd makes them (directories 0755, the log 0640), whatever the daemon's umask;
        // without them output is dropped until the next reopen.
        guard path.hasPrefix("/"), CRILog.ensureDirectories(dir) else {
            fd = -1
            return
        }
        fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
        var st = stat()
        if fd >= 0, fstat(fd, &st) == 0, st.st_size == 0 { fchmod(fd, 0o640) }
    }

    /// Splits `data` into lines in one pass (a flood of short lines costs its length, not its square).
    public func write(stream: CRILog.Stream, _ data: [UInt8]) {
        let stamp = CRILog.timestamp()
        let full = CRILog.prefix(stamp, stream, .full)
        let partial = CRILog.prefix(stamp, stream, .partial)
        var out: [UInt8] = []
        out.reserveCapacity(data.count + (data.count / 8 + 1) * full.count)
        var carry = pending[stream, default: []]
        var start = data.startIndex
        while let nl = data[start...].firstIndex(of: 0x0A) {
            out += full
            if carry.isEmpty {
                out += data[start..<nl]
            } else {
                out += carry
                out += data[start..<nl]
                carry = []
            }
            out.append(0x0A)
            start = nl + 1
        }
        carry += data[start...]
        var offset = 0
        while carry.count - offset >= CRILog.maxLine {
            out += partial
            out += carry[offset..<(offset + CRILog.maxLine)]
            out.append(0x0A)
            offset += CRILog.maxLine
        }
        pending[stream] = offset == 0 ? carry : Array(carry[offset...])
        emit(out)
    }

    /// True while the file open is the one at `path`.
    private var pathNamesOpenFile: Bool {
        var open = stat()
        var named = stat()
        guard fd >= 0, fstat(fd, &open) == 0, stat(path, &named) == 0 else { return false }
        return open.st_dev == named.st_dev && open.st_ino == named.st_ino
    }

    /// Writes what is left of unterminated lines as partial lines.
    public func finish() {
        let stamp = CRILog.timestamp()
        var out: [UInt8] = []
        for stream in [CRILog.Stream.stdout, .stderr] {
            guard let rest = pending[stream], !rest.isEmpty else { continue }
            out += CRILog.prefix(stamp, stream, .partial) + rest + [0x0A]
            pending[stream] = []
        }
        emit(out)
    }

    private func emit(_ bytes: [UInt8]) {
        guard !bytes.isEmpty else { return }
        if followsPath && !pathNamesOpenFile { reopen() }
        guard fd >= 0 else { return }
        _ = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
    }
}

/// Turns CRI log lines back into the output: partial pieces are joined until their F line.
public struct CRILogReader {
    public struct Line: Equatable, Sendable {
        public var stream: CRILog.Stream
        public var text: String
    }

    let timestamps: Bool
    private var carry = Data()
    private var partial: [CRILog.Stream: String] = [:]

    public init(timestamps: Bool = false) { self.timestamps = timestamps }

    /// Reads whole lines in one pass; an unterminated rest waits for the next feed.
    public mutating func feed(_ data: Data) -> [Line] {
        carry.append(data)
        var out: [Line] = []
        var start = carry.startIndex
        defer { carry = Data(carry[start...]) }
        while let nl = carry[start...].firstIndex(of: 0x0A) {
            let raw = String(decoding: carry[start..<nl], as: UTF8.self)
            start = nl + 1
            let parts = raw.split(separator: " ", maxSplits: 3, omittingEmptySubsequences: false)
            guard parts.count >= 3, let stream = CRILog.Stream(rawValue: String(parts[1])) else { continue }
            let text = parts.count == 4 ? String(parts[3]) : ""
            if parts[2] == CRILog.Tag.partial.rawValue {
                partial[stream, default: ""] += text
                continue
            }
            let whole = (partial.removeValue(forKey: stream) ?? "") + text
            out.append(Line(stream: stream, text: (timestamps ? "\(parts[0]) " : "") + whole + "\n"))
        }
        return out
    }
}
