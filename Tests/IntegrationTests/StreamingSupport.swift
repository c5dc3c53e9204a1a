import Foundation

/// crictl (v1.36, kubernetes-sigs/cri-tools) as an independent client of the daemon: its exec,
/// attach and port-forward speak the kubelet's streaming protocols with client-go's code, not ours.
struct Crictl {
    /// `$CRICTL`, else `../shared/tools/crictl` beside the repository; nil when neither exists.
    static var path: String? {
        if let path = ProcessInfo.processInfo.environment["CRICTL"], FileManager.default.isExecutableFile(atPath: path)
        {
            return path
        }
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let shared = repo.deletingLastPathComponent().appendingPathComponent("shared/tools/crictl").path
        return FileManager.default.isExecutableFile(atPath: shared) ? shared : nil
    }

    let binary: String
    let socket: String

    var prefix: [String] {
        [binary, "--runtime-endpoint", "unix://\(socket)", "--image-endpoint", "unix://\(socket)", "-t", "120s"]
    }

    /// The command line as one shell string (for `script`, which runs it on a terminal).
    func shell(_ args: [String]) -> String { (prefix + args).map(shellQuote).joined(separator: " ") }
}

/// Our own client, built beside the daemon.
struct CocoonCtl {
    let socket: String
    var binary: String { (DaemonHarness.binary as NSString).deletingLastPathComponent + "/cocoonctl" }
    /// `cocoonctl SUBCOMMAND -r unix://SOCKET ARGS...`
    func argv(_ subcommand: String, _ args: [String]) -> [String] {
        [binary, subcommand, "-r", "unix://\(socket)"] + args
    }
}

func shellQuote(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'" }

/// The result of a finished command: its output files' contents and exit status.
struct CommandResult {
    var stdout: Data
    var stderr: String
    var code: Int32
    var out: String { String(decoding: stdout, as: UTF8.self) }
}

/// A process whose output goes to files (no pipe can fill and block it), optionally fed a file.
final class Command: @unchecked Sendable {
    let process = Process()
    let outPath: String
    let errPath: String
    /// Its output files' directory, deleted with it.
    private let dir: String

    init(_ argv: [String], stdinFile: String? = nil) throws {
        dir = NSTemporaryDirectory() + "cocoon-cmd-" + UUID().uuidString.prefix(8)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        outPath = dir + "/out"
        errPath = dir + "/err"
        FileManager.default.createFile(atPath: outPath, contents: nil)
        FileManager.default.createFile(atPath: errPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: argv[0])
        process.arguments = Array(argv.dropFirst())
        process.standardOutput = FileHandle(forWritingAtPath: outPath)
        process.standardError = FileHandle(forWritingAtPath: errPath)
        process.standardInput = stdinFile.flatMap { FileHandle(forReadingAtPath: $0) } ?? FileHandle.nullDevice
        try process.run()
    }

    deinit { try? FileManager.default.removeItem(atPath: dir) }  // test scratch space

    var output: String { (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "" }
    var errors: String { (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "" }

    /// Waits for the exit, at most `timeout` (then kills it and throws).
    func wait(timeout: Duration = .seconds(120)) async throws -> CommandResult {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning {
            if ContinuousClock.now > deadline {
                process.terminate()
                throw TestFailure(description: "\(process.arguments ?? []) did not finish; stderr: \(errors)")
            }
            // sleep: a poll pause; the loop checks the condition
            try await Task.sleep(for: .milliseconds(20))
        }
        let stdout = FileManager.default.contents(atPath: outPath) ?? Data()
        defer { try? FileManager.default.removeItem(atPath: (outPath as NSString).deletingLastPathComponent) }
        return CommandResult(stdout: stdout, stderr: errors, code: process.terminationStatus)
    }

    /// Waits until the output contains `text`.
    func waitForOutput(_ text: String, timeout: Duration = .seconds(60)) async throws {
        let deadline = ContinuousClock.now + timeout
        while !output.contains(text) {
            guard process.isRunning, ContinuousClock.now < deadline else {
                throw TestFailure(description: "no \"\(text)\" from \(process.arguments ?? []): \(output) \(errors)")
            }
            // sleep: a poll pause; the loop checks the condition
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    func kill(_ signal: Int32 = SIGKILL) { Glibc.kill(process.processIdentifier, signal) }
}

func runCommand(_ argv: [String], stdinFile: String? = nil, timeout: Duration = .seconds(120)) async throws
    -> CommandResult
{
    try await Command(argv, stdinFile: stdinFile).wait(timeout: timeout)
}

/// Plain blocking TCP for tests, run on a thread of its own so that many at once do not starve
/// the test's cooperative pool.
enum TCP {
    /// Connects to 127.0.0.1:port, sends `data`, half-closes when `halfClose`, and reads until EOF;
    /// `concurrently`: reads while it sends (an echo of more than the buffers on the way hold).
    static func exchange(port: UInt16, send data: [UInt8], halfClose: Bool = true, concurrently: Bool = false)
        async throws -> [UInt8]
    {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(
                    with: Result {
                        try blockingExchange(port: port, data, halfClose: halfClose, concurrently: concurrently)
                    })
            }
        }
    }

    private static func blockingExchange(port: UInt16, _ data: [UInt8], halfClose: Bool, concurrently: Bool) throws
        -> [UInt8]
    {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestFailure(description: "socket: \(errno)") }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 120, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard rc == 0 else { throw TestFailure(description: "connect to port \(port): errno \(errno)") }
        let sendAll: @Sendable () -> Void = {
            var offset = 0
            while offset < data.count {
                let n = data.withUnsafeBytes {
                    Glibc.send(fd, $0.baseAddress! + offset, data.count - offset, Int32(MSG_NOSIGNAL))
                }
                guard n > 0 else { break }  // the peer went away: what it sent back tells
                offset += n
            }
            if halfClose { shutdown(fd, Int32(SHUT_WR)) }
        }
        let sent = DispatchSemaphore(value: 0)
        if concurrently {
            Thread.detachNewThread {
                sendAll()
                sent.signal()
            }
        } else {
            sendAll()
            sent.signal()
        }
        defer { sent.wait() }  // before the fd is closed
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 {
                received += buffer[0..<n]
            } else if n == 0 || errno == ECONNRESET {
                return received
            } else {
                throw TestFailure(description: "recv: errno \(errno)")
            }
        }
    }
}

/// The bytes of an HTTP response after its header.
func httpBody(_ response: [UInt8]) -> [UInt8] {
    let separator: [UInt8] = Array("\r\n\r\n".utf8)
    guard response.count >= 4 else { return [] }
    for i in 0...(response.count - 4) where Array(response[i..<(i + 4)]) == separator {
        return Array(response[(i + 4)...])
    }
    return []
}

/// A free TCP port on 127.0.0.1 (bound and released, so a client can listen on it next).
func freePort() -> UInt16 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, length) == 0 ? getsockname(fd, $0, &length) : -1
        }
    }
    return UInt16(bigEndian: addr.sin_port)
}

func md5(_ path: String) async throws -> String {
    String(try await runCommand(["/usr/bin/md5sum", path]).out.prefix(32))
}

/// `count` bytes from /dev/urandom.
func randomBytes(_ count: Int) throws -> Data {
    let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: "/dev/urandom"))
    defer { try? handle.close() }  // read-only handle
    return try handle.read(upToCount: count) ?? Data()
}

/// The server's (unmasked) WebSocket binary frames in a raw reply, after its HTTP head: channel
/// byte and data of each.
enum WebSocketFrames {
    /// A client's binary frame (masked, as a client's must be) carrying `payload` (under 126 bytes).
    static func client(_ payload: [UInt8]) -> [UInt8] {
        let mask: [UInt8] = [0x11, 0x22, 0x33, 0x44]
        return [0x82, 0x80 | UInt8(payload.count)] + mask
            + payload.enumerated().map { $0.element ^ mask[$0.offset % 4] }
    }

    static func parse(_ reply: [UInt8]) -> [(channel: UInt8, data: [UInt8])] {
        guard let head = reply.firstRange(of: Array("\r\n\r\n".utf8)) else { return [] }
        var i = head.upperBound
        var frames: [(channel: UInt8, data: [UInt8])] = []
        while i + 2 <= reply.count {
            let opcode = reply[i] & 0x0f
            var length = Int(reply[i + 1] & 0x7f)
            i += 2
            if length == 126 {
                guard i + 2 <= reply.count else { break }
                length = Int(reply[i]) << 8 | Int(reply[i + 1])
                i += 2
            } else if length == 127 {
                guard i + 8 <= reply.count else { break }
                length = reply[i..<i + 8].reduce(0) { $0 << 8 | Int($1) }
                i += 8
            }
            guard i + length <= reply.count else { break }
            if opcode == 2, length > 0 { frames.append((reply[i], Array(reply[i + 1..<i + length]))) }
            i += length
        }
        return frames
    }
}
