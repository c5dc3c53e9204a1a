import CSpawn
import Foundation
import Models

/// Owns host process plumbing the drivers share: running a helper to completion with its output,
/// and telling whether a VM process is still alive (a zombie or a reused pid counts as gone).
public enum HostProcess {
    public struct Result: Sendable {
        public var status: Int32
        public var output: String
    }

    /// Runs `argv` to completion off the cooperative pool, with stdout+stderr captured in a temp file
    /// (not a pipe: a daemonizing child such as `qemu -daemonize` may keep inherited descriptors open
    /// long after the parent has exited). A process still running after `timeout` is killed.
    public static func run(_ argv: [String], timeout: Duration = .seconds(60)) async throws -> Result {
        try await OffPool.run { () throws -> Result in try runBlocking(argv, timeout: timeout) }
    }

    /// `run` on the calling thread (for callers already off the cooperative pool). The child gets
    /// stdin from /dev/null, the output file as stdout and stderr, and no other descriptor of the
    /// daemon (see `cocoon_spawn`); its signal mask is empty and its dispositions default.
    public static func runBlocking(_ argv: [String], timeout: Duration = .seconds(60)) throws -> Result {
        let done = try execute(argv, environment: nil, input: nil, separateErrors: false, timeout: timeout)
        return Result(status: done.status, output: String(decoding: done.output, as: UTF8.self))
    }

    /// What `execute` gives back: the exit code (128 + signal for a killed process), stdout (with
    /// stderr unless they were separated) and stderr, each cut at 1 MiB.
    public struct Captured: Sendable {
        public var status: Int32
        public var output: [UInt8]
        public var errors: [UInt8]
    }

    /// Runs `argv` to completion on the calling thread (callers keep it off the cooperative pool):
    /// `environment` replaces the daemon's when given ("KEY=value" entries), `input` is its stdin
    /// (else /dev/null); stdout and stderr go to temp files, together or apart. Killed after `timeout`.
    public static func execute(
        _ argv: [String], environment: [String]?, input: [UInt8]?, separateErrors: Bool, timeout: Duration
    ) throws -> Captured {
        guard let path = argv.first else { throw POSIXError(.EINVAL) }
        let out = try scratchFile()
        defer { close(out) }
        let err = separateErrors ? try scratchFile() : out
        defer { if separateErrors { close(err) } }
        var inFD: Int32 = -1
        if let input {
            inFD = try scratchFile()
            let written = input.withUnsafeBytes { write(inFD, $0.baseAddress, $0.count) }
            lseek(inFD, 0, SEEK_SET)
            guard written == input.count else {
                close(inFD)
                throw POSIXError(.EIO)
            }
        }
        defer { if inFD >= 0 { close(inFD) } }
        var cargs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { for a in cargs { free(a) } }
        var cenv: [UnsafeMutablePointer<CChar>?] = (environment ?? []).map { strdup($0) } + [nil]
        defer { for e in cenv { free(e) } }
        var pid: pid_t = 0
        let rc =
            environment == nil
            ? cocoon_spawn(path, &cargs, environ, inFD, out, err, &pid)
            : cocoon_spawn(path, &cargs, &cenv, inFD, out, err, &pid)
        guard rc == 0 else { throw POSIXError(POSIXErrorCode(rawValue: rc) ?? .EIO) }
        // Reap it ourselves: its exit awaited through a pidfd until the deadline, SIGKILL after it.
        let ms = Int32(clamping: max(0, timeout.nanoseconds / 1_000_000))
        var exited = cocoon_wait_exit(pid, ms)  // 1: exited, 0: the deadline passed, < 0: no pidfd
        if exited < 0 {
            // A kernel without pidfds (before 5.3): its exit is polled for instead.
            let deadline = ContinuousClock.now + timeout
            while !isZombie(pid), ContinuousClock.now < deadline { usleep(2_000) }
            exited = isZombie(pid) ? 1 : 0
        }
        if exited == 0 { Glibc.kill(pid, SIGKILL) }
        var status: Int32 = 0
        // blocking: `execute` is the blocking form (`run` calls it on OffPool); the child has exited or been killed
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return Captured(
            status: WaitStatus.exitCode(status), output: readBack(out),
            errors: separateErrors ? readBack(err) : [])
    }

    private static func isZombie(_ pid: Int32) -> Bool { statFields(pid)?.state == "Z" }

    /// An unlinked temp file, close-on-exec.
    private static func scratchFile() throws -> Int32 {
        var template = Array("/tmp/cocoon-out-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { buf -> Int32 in
            guard let base = buf.baseAddress else { return -1 }
            return mkstemp(base)
        }
        guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        unlink(String(cString: template))
        _ = cocoon_set_cloexec(fd)
        return fd
    }

    private static func readBack(_ fd: Int32) -> [UInt8] {
        lseek(fd, 0, SEEK_SET)
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while bytes.count < 1 << 20 {
            let n = read(fd, &chunk, chunk.count)
            if n <= 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
        }
        return bytes
    }

    /// True when `pid` is a live process that is the one meant: started at `startTicks` when that is
    /// known (what the process cannot change: a compromised VM process may rewrite its command
    /// line, and a pid may be reused), else whose command line contains `marker`.
    public static func isAlive(pid: Int32, marker: String, startTicks: UInt64? = nil) -> Bool {
        guard pid > 0, let fields = statFields(pid) else { return false }
        if fields.state == "Z" || fields.state == "X" {
            // A VM the daemon started itself ends as its zombie: reap it (ECHILD for anyone else's).
            var status: Int32 = 0
            _ = waitpid(pid, &status, WNOHANG)
            return false
        }
        if let startTicks { return fields.startTicks == startTicks }
        guard let cmdline = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
        return String(decoding: cmdline.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self).contains(marker)
    }

    /// When the process started (clock ticks after boot, /proc/PID/stat field 22): with its pid,
    /// what identifies it for as long as it lives.
    public static func startTicks(_ pid: Int32) -> UInt64? { statFields(pid)?.startTicks }

    /// The state and start time of a process, read after its command name (which may hold spaces
    /// and parentheses).
    private static func statFields(_ pid: Int32) -> (state: Character?, startTicks: UInt64?)? {
        // try?: no stat file: the process is gone
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return nil }
        let rest = stat[stat.index(after: close)...].split(separator: " ")
        // rest[0] is field 3 (state); field 22 (starttime) is rest[19].
        return (rest.first?.first, rest.count > 19 ? UInt64(rest[19]) : nil)
    }

    /// Users whose processes live now (the real and effective uids of every process).
    public static func liveUIDs() -> Set<UInt32> {
        // try?: no procfs: no processes to see
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        var uids = Set<UInt32>()
        for pid in entries.compactMap({ Int32($0) }) {
            // try?: a process that ended meanwhile has no status
            guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
                let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Uid:") })
            else { continue }
            for field in line.split(whereSeparator: { $0 == "\t" || $0 == " " }).dropFirst() {
                if let uid = UInt32(field) { uids.insert(uid) }
            }
        }
        return uids
    }

    /// Live processes with an argument containing `marker` (a VM whose pid was never recorded).
    public static func pids(withArgument marker: String) -> [Int32] {
        // try?: no procfs: no processes to find
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { Int32($0) }.filter { $0 != getpid() && isAlive(pid: $0, marker: marker) }
    }

    /// Waits until the process is gone or the timeout passes. True when gone.
    public static func waitGone(pid: Int32, marker: String, startTicks: UInt64? = nil, timeout: Duration) async -> Bool
    {
        // Its exit awaited through a pidfd, opened before the process is checked so that the check and
        // the wait are about the same process.
        let pidfd = cocoon_pidfd_open(pid)
        if pidfd >= 0 {
            defer { close(pidfd) }
            guard isAlive(pid: pid, marker: marker, startTicks: startTicks) else { return true }
            let ms = Int32(clamping: max(0, timeout.nanoseconds / 1_000_000))
            let exited = await OffPool.run { cocoon_pidfd_wait(pidfd, ms) }
            if exited >= 0 { return !isAlive(pid: pid, marker: marker, startTicks: startTicks) }  // reaps our own
        }
        // No pidfd (a kernel before 5.3, or the process is gone): its exit is polled for.
        let clock = ContinuousClock()
        let end = clock.now + timeout
        while isAlive(pid: pid, marker: marker, startTicks: startTicks) {
            if clock.now >= end { return false }
            // try?: cancellation ends the wait early
            try? await Task.sleep(for: .milliseconds(20))
        }
        return true
    }

    /// Kills a child of this daemon and reaps it, the wait off the cooperative pool (a dying QEMU
    /// frees its guest's RAM before it is reaped).
    public static func killAndReap(_ pid: Int32) async {
        Glibc.kill(pid, SIGKILL)
        await OffPool.run {
            var status: Int32 = 0
            // blocking: on OffPool's thread
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        }
    }

    public static func nowNs() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }
}
