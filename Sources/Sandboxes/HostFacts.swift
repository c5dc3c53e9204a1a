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

/// The host's memory, to refuse VMs that could never fit.
enum HostMemory {
    static func totalMiB() -> Int? {
        // no procfs: no check
        guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("MemTotal:") {
            let parts = line.split(separator: " ")
            if parts.count >= 2, let kib = Int(parts[1]) { return kib / 1024 }
        }
        return nil
    }
}
