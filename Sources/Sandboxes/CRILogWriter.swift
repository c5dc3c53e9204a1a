import Foundation

/// Writes one container's output in the CRI log format, `<RFC3339Nano> <stdout|stderr> <P|F> <text>`:
/// a full line is tagged F; a line longer than `maxLine`, or output left unterminated when the
/// process ends, is written in P (partial) pieces. `reopen` follows a log rotation.
final class CRILogWriter {
    let path: String
    private var fd: Int32 = -1
    private var pending: [String: [UInt8]] = ["stdout": [], "stderr": []]
    static let maxLine = 16 * 1024

    init(path: String) {
        self.path = path
        reopen()
    }

    deinit { if fd >= 0 { close(fd) } }

    func reopen() {
        if fd >= 0 { close(fd) }
        try? FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
    }

    func write(stream: String, _ data: [UInt8]) {
        var buffer = pending[stream, default: []] + data
        var out: [UInt8] = []
        let stamp = Array(CRILogWriter.timestamp().utf8)
        while let nl = buffer.firstIndex(of: 0x0A) {
            out += line(stamp, stream, "F", buffer[..<nl])
            buffer.removeSubrange(...nl)
        }
        while buffer.count >= CRILogWriter.maxLine {
            out += line(stamp, stream, "P", buffer[..<CRILogWriter.maxLine])
            buffer.removeFirst(CRILogWriter.maxLine)
        }
        pending[stream] = buffer
        emit(out)
    }

    /// Writes what is left of unterminated lines as partial lines.
    func finish() {
        let stamp = Array(CRILogWriter.timestamp().utf8)
        var out: [UInt8] = []
        for stream in ["stdout", "stderr"] where !(pending[stream] ?? []).isEmpty {
            out += line(stamp, stream, "P", (pending[stream] ?? [])[...])
            pending[stream] = []
        }
        emit(out)
    }

    private func line(_ stamp: [UInt8], _ stream: String, _ tag: String, _ text: ArraySlice<UInt8>) -> [UInt8] {
        stamp + Array(" \(stream) \(tag) ".utf8) + text + [0x0A]
    }

    private func emit(_ bytes: [UInt8]) {
        guard fd >= 0, !bytes.isEmpty else { return }
        _ = bytes.withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
    }

    /// UTC with nine fractional digits, as containerd writes it.
    static func timestamp() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var t = ts.tv_sec
        var tmv = tm()
        gmtime_r(&t, &tmv)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%09ldZ", tmv.tm_year + 1900, tmv.tm_mon + 1, tmv.tm_mday, tmv.tm_hour, tmv.tm_min, tmv.tm_sec, ts.tv_nsec)
    }
}
