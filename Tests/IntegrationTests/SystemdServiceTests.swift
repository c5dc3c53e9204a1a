import Foundation
import Hypervisor
import Testing

/// cocoond as a systemd service: the shipped unit passes `systemd-analyze verify` (this machine has
/// no systemd as PID 1, so the unit is verified, and its notifications are checked here by playing
/// systemd's part: a datagram socket in `$NOTIFY_SOCKET`), READY=1 comes once the CRI socket
/// listens, WATCHDOG=1 keeps coming at half of `$WATCHDOG_USEC`, and SIGTERM brings STOPPING=1.
@Suite(.serialized, .enabled(if: DaemonHarness.enabled, "needs the built daemon (scripts/test)"))
struct SystemdServiceTests {
    static var repo: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().path
    }

    @Test func theShippedUnitVerifies() async throws {
        let analyze = "/usr/bin/systemd-analyze"
        try #require(FileManager.default.isExecutableFile(atPath: analyze), "scripts/setup-host installs systemd")
        let unit = try String(contentsOfFile: Self.repo + "/packaging/systemd/cocoond.service", encoding: .utf8)
        for directive in ["Type=notify", "KillMode=process", "Delegate=yes", "Restart=always", "OOMScoreAdjust=-999"] {
            #expect(unit.contains("\n" + directive + "\n"), "\(directive)")
        }
        // The unit as installed, with ExecStart on this build's daemon (verify checks it is there).
        let dir = NSTemporaryDirectory() + "cocoon-unit-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }  // test scratch space
        try unit.replacingOccurrences(of: "/usr/bin/cocoond", with: DaemonHarness.binary)
            .write(toFile: dir + "/cocoond.service", atomically: true, encoding: .utf8)
        let verified = try await runCommand([analyze, "verify", "--man=no", dir + "/cocoond.service"])
        #expect(verified.code == 0, "\(verified.out) \(verified.stderr)")
    }

    @Test func cocoondNotifiesReadyWatchdogAndStopping() async throws {
        let root = "/tmp/cocoon-notify-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }  // test scratch space
        let config = """
            state_root = "\(root)/state"
            run_dir = "\(root)/run"
            [cni]
            conf_dir = "\(root)/net.d"
            [handlers.cocoon]
            backend = "native"
            """
        try config.write(toFile: root + "/config.toml", atomically: true, encoding: .utf8)
        let listener = try NotifyListener(path: root + "/notify.sock")
        defer { listener.close() }
        let daemon = Process()
        daemon.executableURL = URL(fileURLWithPath: DaemonHarness.binary)
        daemon.arguments = ["--config", root + "/config.toml"]
        daemon.environment = [
            "NOTIFY_SOCKET": listener.path, "WATCHDOG_USEC": "400000", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        ]
        daemon.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try daemon.run()
        defer { if daemon.isRunning { daemon.terminate() } }
        let ready = listener.receive(until: { $0.contains("READY=1") }, within: 30)
        #expect(ready.contains { $0.contains("READY=1") }, "\(ready)")
        // Ready means the CRI socket takes connections now.
        #expect(UnixSocketAddress.accepts(root + "/run/cocoon.sock"))
        let pets = listener.receive(until: { _ in false }, within: 1.5).filter { $0 == "WATCHDOG=1" }
        #expect(pets.count >= 3, "WATCHDOG=1 every 0.2 s: \(pets.count) in 1.5 s")
        daemon.terminate()
        let stopping = listener.receive(until: { $0.contains("STOPPING=1") }, within: 30)
        #expect(stopping.contains { $0.contains("STOPPING=1") }, "\(stopping)")
        daemon.waitUntilExit()
        #expect(daemon.terminationStatus == 0)
    }
}

/// A datagram socket where a test plays systemd's end of sd_notify.
final class NotifyListener {
    let path: String
    private let fd: Int32

    init(path: String) throws {
        self.path = path
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0, UnixSocketAddress.bind(fd, path: path) else { throw HarnessError("cannot listen on \(path)") }
    }

    /// The messages that arrive until one satisfies `done` or `within` seconds pass.
    func receive(until done: (String) -> Bool, within seconds: Double) -> [String] {
        var messages: [String] = []
        let deadline = Date().addingTimeInterval(seconds)
        var buffer = [UInt8](repeating: 0, count: 4096)
        while Date() < deadline {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let wait = Int32(max(1, deadline.timeIntervalSinceNow * 1000))
            guard poll(&poller, 1, wait) > 0 else { continue }
            let n = recv(fd, &buffer, buffer.count, 0)
            guard n > 0 else { continue }
            let message = String(decoding: buffer[0..<n], as: UTF8.self)
            messages.append(message)
            if done(message) { break }
        }
        return messages
    }

    func close() {
        Glibc.close(fd)
        unlink(path)
    }
}
