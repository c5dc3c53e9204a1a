import Foundation
import Glibc
import Testing

/// `cocoon-pause`, a native pod's infra process, as PID 1 of a PID namespace of its own (run as
/// root, in real namespaces): orphans the kernel hands it are reaped, and SIGTERM ends it with 0.
@Suite struct PauseProcessTests {
    static var pause: String {
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        return repo.path + "/.build/debug/cocoon-pause"
    }

    /// The pids whose parent is `parent`, zombies included, from /proc.
    static func children(of parent: Int32) -> [Int32] {
        // try?: /proc is always there; an entry gone meanwhile is skipped
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { Int32($0) }.filter { pid in
            guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else {
                return false  // try?: the process ended while we looked
            }
            return status.split(separator: "\n").contains { $0 == "PPid:\t\(parent)" }
        }
    }

    static func run(_ argv: [String]) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: argv[0])
        process.arguments = Array(argv.dropFirst())
        try process.run()
        return process
    }

    @Test(.enabled(if: getuid() == 0, "needs root for a PID namespace"))
    func reapsOrphansAsPID1AndEndsOnTERM() async throws {
        let holder = try Self.run(["/usr/bin/unshare", "--pid", "--fork", Self.pause])
        defer { if holder.isRunning { holder.terminate() } }
        var pause: Int32 = 0
        #expect(
            await eventually {
                pause = Self.children(of: holder.processIdentifier).first ?? 0
                return pause > 0
            }, "unshare started cocoon-pause")
        // A shell in its namespace leaves a sleep behind: the orphan becomes pause's child.
        _ = try Self.run(["/usr/bin/nsenter", "-t", "\(pause)", "-p", "--", "/bin/sh", "-c", "sleep 600 &"])
        var orphans: [Int32] = []
        #expect(
            await eventually {
                orphans = Self.children(of: pause)
                return orphans.count == 1
            }, "the orphan was handed to PID 1")
        // It ends: PID 1 reaps it (else it stays, a zombie, its child).
        for orphan in orphans { kill(orphan, SIGKILL) }
        #expect(await eventually { Self.children(of: pause).isEmpty }, "the orphan was reaped")
        kill(pause, SIGTERM)
        holder.waitUntilExit()
        #expect(holder.terminationStatus == 0, "SIGTERM ends it with 0")
    }
}
