import Glibc

/// The calling process's mount points, read from /proc/self/mountinfo (its whole text: Foundation
/// stops /proc reads after one page).
public enum MountTable {
    /// Every mount point, in mount order (a path appears once per mount stacked on it).
    public static func mountPoints() -> [String] {
        (FileText.read("/proc/self/mountinfo", limit: 16 << 20) ?? "").split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ", omittingEmptySubsequences: false)
            return fields.count > 4 ? unescape(fields[4]) : nil
        }
    }

    /// True when `path` (already resolved) is a mount point.
    public static func isMountPoint(_ path: String) -> Bool { mountPoints().contains(path) }

    /// The mount points strictly below `path` (resolved), deepest first.
    public static func mountPoints(below path: String) -> [String] {
        let prefix = path.hasSuffix("/") ? path : path + "/"
        return mountPoints().filter { $0.hasPrefix(prefix) }.sorted { $0.count > $1.count }
    }

    /// mountinfo escapes space, tab, newline and backslash as \ooo.
    static func unescape(_ field: Substring) -> String {
        var bytes: [UInt8] = []
        let raw = Array(field.utf8)
        var i = 0
        while i < raw.count {
            if raw[i] == UInt8(ascii: "\\"), i + 3 < raw.count,
                let value = UInt8(String(decoding: raw[(i + 1)..<min(i + 4, raw.count)], as: UTF8.self), radix: 8)
            {
                bytes.append(value)
                i += 4
            } else {
                bytes.append(raw[i])
                i += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
