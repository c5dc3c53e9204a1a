import CSpawn
import Foundation
import Models
import Spawn

/// A minimal QMP (QEMU Machine Protocol) client: connect, negotiate capabilities, run one command.
/// Every socket operation has a timeout so a wedged QEMU cannot hang the daemon.
enum QMPClient {
    /// Runs `command` (e.g. `quit`) and returns QEMU's reply line, or nil if QEMU did not answer.
    static func execute(_ command: String, socketPath: String, timeout: Duration = .seconds(2)) async -> String? {
        await run([Self.command(command)], socketPath: socketPath, timeout: timeout).first ?? nil
    }

    /// Runs commands given as whole QMP JSON objects, in order, on one session; returns each reply
    /// (nil where QEMU did not answer, and for every command after that).
    /// `passing`: a descriptor sent with the first command (SCM_RIGHTS), as `add-fd` takes it.
    static func run(_ commands: [String], socketPath: String, timeout: Duration = .seconds(5), passing fd: Int32? = nil)
        async -> [String?]
    {
        await OffPool.run { runBlocking(commands, socketPath: socketPath, timeout: timeout, passing: fd) }
    }

    private static func runBlocking(_ commands: [String], socketPath: String, timeout: Duration, passing: Int32?)
        -> [String?]
    {
        var replies = [String?](repeating: nil, count: commands.count)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return replies }
        defer { close(fd) }
        var tv = timeval(
            tv_sec: Int(timeout.components.seconds), tv_usec: Int(timeout.nanoseconds % 1_000_000_000 / 1000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        guard UnixSocketAddress.connect(fd, path: socketPath) else { return replies }
        var reader = LineReader(fd: fd)
        guard reader.next() != nil else { return replies }
        guard send(fd, Self.command("qmp_capabilities") + "\n"), reader.nextReply() != nil else { return replies }
        for (i, command) in commands.enumerated() {
            let sent: Bool
            if i == 0, let passing {
                let bytes = Array((command + "\n").utf8)
                sent =
                    bytes.withUnsafeBytes { cocoon_send_with_fd(fd, $0.baseAddress, UInt($0.count), passing) }
                    == bytes.count
            } else {
                sent = send(fd, command + "\n")
            }
            guard sent, let reply = reader.nextReply() else { break }
            replies[i] = reply
        }
        return replies
    }

    /// A QMP command as JSON text (no `arguments` member when there are none).
    static func command(_ name: String, _ arguments: [String: Any] = [:]) -> String {
        let object: [String: Any] = arguments.isEmpty ? ["execute": name] : ["execute": name, "arguments": arguments]
        // try?: only string/number dictionaries are passed in
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else {
            return "{}"
        }
        return String(decoding: data, as: UTF8.self)
    }

    private static func send(_ fd: Int32, _ text: String) -> Bool {
        let bytes = Array(text.utf8)
        return bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == bytes.count
    }

    /// Splits the QMP stream into lines; `nextReply` skips asynchronous events.
    private struct LineReader {
        let fd: Int32
        var buffer: [UInt8] = []

        mutating func next() -> String? {
            while true {
                if let nl = buffer.firstIndex(of: 0x0A) {
                    let line = String(decoding: buffer[..<nl], as: UTF8.self)
                    buffer.removeFirst(nl + 1)
                    return line
                }
                var chunk = [UInt8](repeating: 0, count: 4096)
                let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                guard n > 0 else { return nil }
                buffer.append(contentsOf: chunk[0..<n])
                if buffer.count > 1 << 20 { return nil }
            }
        }

        mutating func nextReply() -> String? {
            while let line = next() {
                if line.contains("\"return\"") || line.contains("\"error\"") { return line }
            }
            return nil
        }
    }
}

/// Binds and connects sockets to Unix paths (paths longer than sun_path are refused).
public enum UnixSocketAddress {
    /// Binds a socket to a Unix path.
    public static func bind(_ fd: Int32, path: String) -> Bool {
        withAddress(path) { Glibc.bind(fd, $0, $1) == 0 }
    }

    /// True when something listens on the Unix socket at `path` and accepts a connection.
    public static func accepts(_ path: String) -> Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return connect(fd, path: path)
    }

    public static func connect(_ fd: Int32, path: String) -> Bool {
        withAddress(path) { Glibc.connect(fd, $0, $1) == 0 }
    }

    /// Calls `body` with `path` as a sockaddr_un; false when it does not fit.
    private static func withAddress(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> Bool) -> Bool {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { return false }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
        }
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
    }
}
