import BootContract
import Glibc

/// The agent's settings, passed by the host on the kernel command line (`BootContract`).
enum KernelCommandLine {
    static func read() -> BootContract.Settings {
        BootContract.Settings.parse(readSmallFile("/proc/cmdline") ?? "")
    }
}

/// Reads a small text file (procfs, sysfs) whole; nil when it cannot be read.
func readSmallFile(_ path: String, limit: Int = 1 << 20) -> String? {
    readSmallBytes(path, limit: limit).map { String(decoding: $0, as: UTF8.self) }
}

/// Reads a small file whole as bytes (sysfs binary attributes); nil when it cannot be opened.
func readSmallBytes(_ path: String, limit: Int = 1 << 20) -> [UInt8]? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while bytes.count < limit {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else { break }
        bytes.append(contentsOf: chunk[0..<n])
    }
    return bytes
}

/// The names in a directory, without "." and ".."; nil when it cannot be opened.
func directoryEntries(_ path: String) -> [String]? {
    guard let dir = opendir(path) else { return nil }
    defer { closedir(dir) }
    var names: [String] = []
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if name != "." && name != ".." { names.append(name) }
    }
    return names
}
