import CRIAPI
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Testing

/// Pods whose workload turns against the host: the daemon stays up, bounded and fair to other pods.
@Suite(
    .serialized,
    .enabled(
        if: DaemonHarness.enabled && TestImages.available, "needs the guest image and the test registry (scripts/test)")
)
struct HostileGuestTests {
    static let busybox = "127.0.0.1:5000/busybox:latest"

    /// Resident memory of a process, KiB.
    func rssKiB(_ pid: Int32) -> Int {
        let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
        return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
    }

    /// `yes` in one pod's container floods its log as fast as the guest can send. The daemon reads
    /// only as fast as it writes the log (the guest is held back, not buffered), so its memory stays
    /// bounded, and another pod's CRI calls still answer (within 1 s at p99: on a 2-core host the
    /// flooding VM's threads take CPU from everything else, so "2× idle" is not this test's bound).
    @Test func aContainerFloodingOutputLeavesTheDaemonBoundedAndOtherPodsServed() async throws {
        try await withDaemon { daemon in
            _ = try await daemon.withImages { img in try await pull(img, Self.busybox) }
            try await daemon.withRuntime { rt in
                let quiet = podConfig("quiet-\(UInt32.random(in: 0...UInt32.max))")
                try await withTestPod(rt, quiet) { quietID in
                    let sleeper = try await runContainer(
                        rt,
                        containerRequest("sleeper", ["sleep", "1000"], pod: quiet, podID: quietID, image: Self.busybox))
                    let loud = podConfig("loud-\(UInt32.random(in: 0...UInt32.max))")
                    try await withTestPod(rt, loud) { loudID in
                        let pid = try #require(daemon.pid)
                        func statusLatencies(_ n: Int) async throws -> [Double] {
                            var all: [Double] = []
                            for _ in 0..<n {
                                let t0 = ContinuousClock.now
                                _ = try await rt.containerStatus(.with { $0.containerID = sleeper })
                                let d = (ContinuousClock.now - t0).components
                                all.append(Double(d.seconds) * 1000 + Double(d.attoseconds) / 1e15)
                                try await Task.sleep(for: .milliseconds(20))
                            }
                            return all.sorted()
                        }
                        let idle = try await statusLatencies(50)
                        let before = rssKiB(pid)
                        // Lines of 60 characters: the log grows about as fast as the guest sends.
                        let line = String(repeating: "0123456789", count: 6)
                        let flood = try await runContainer(
                            rt,
                            containerRequest(
                                "yes", ["busybox", "yes", line], pod: loud, podID: loudID, image: Self.busybox))
                        var peak = before
                        var busy: [Double] = []
                        for _ in 0..<4 {
                            busy += try await statusLatencies(25)
                            peak = max(peak, rssKiB(pid))
                        }
                        busy.sort()
                        let logSize =
                            (try? FileManager.default.attributesOfItem(atPath: loud.config.logDirectory + "/yes.log")[
                                .size] as? Int) ?? 0
                        try await rt.stopContainer(
                            .with {
                                $0.containerID = flood
                                $0.timeout = 2
                            })
                        let p99 = { (xs: [Double]) in xs[min(xs.count - 1, xs.count * 99 / 100)] }
                        print(
                            "flood: log \(logSize >> 20) MiB, daemon RSS \(before >> 10) -> peak \(peak >> 10) MiB,"
                                + " quiet pod ContainerStatus p99 \(p99(idle)) ms idle, \(p99(busy)) ms during")
                        #expect(logSize > 10 << 20, "the flood reached the log: \(logSize) bytes")
                        #expect(peak - before < 48 << 10, "daemon RSS grew \((peak - before) >> 10) MiB")
                        #expect(
                            p99(busy) < 1000, "quiet pod p99 \(p99(busy)) ms vs \(p99(idle)) idle")
                    }
                }
            }
        }
    }
}
