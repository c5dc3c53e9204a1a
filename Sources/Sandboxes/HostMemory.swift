import Foundation

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
