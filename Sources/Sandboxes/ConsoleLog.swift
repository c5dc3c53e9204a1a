import Foundation

/// Reads the end of a VM's console log for error messages.
public enum ConsoleLog {
    public static func tail(_ path: String, bytes: Int = 600) -> String {
        guard let data = FileManager.default.contents(atPath: path), !data.isEmpty else { return "(empty)" }
        return String(decoding: data.suffix(bytes), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// True once the console's first 64 KiB contain `marker`.
    static func contains(_ path: String, _ marker: String) -> Bool {
        guard let head = FileManager.default.contents(atPath: path)?.prefix(64 << 10) else { return false }
        return String(decoding: head, as: UTF8.self).contains(marker)
    }
}
