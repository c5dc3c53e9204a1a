import CRIAPI
import Foundation
import GRPCCore
import Testing

/// How fast libvirt pods start, measured with the machine to themselves: scripts/test runs this
/// suite on its own after the parallel batch, so its bound is about libvirtd, not about eight other
/// suites' VMs sharing the two cores.
@Suite(
    .serialized, .enabled(if: DaemonHarness.enabled, "set COCOON_GUEST_DIR to a built guest image (scripts/test does)"))
struct LibvirtTimingTests {
    /// libvirtd keeps its QEMU capabilities cache between domains (scripts/setup-host starts it with a
    /// view of /dev/kvm that agrees with the real-boot decision): a second libvirt pod starts in
    /// seconds, where a re-probing libvirtd took about a minute per pod on this machine kind.
    @Test func libvirtPodsInARowStartInSeconds() async throws {
        try await withDaemon { daemon in
            try await daemon.withRuntime { rt in
                // What libvirtd sees of /dev/kvm agrees with the real-boot decision (made at startup).
                var verbose = Runtime_V1_StatusRequest()
                verbose.verbose = true
                var status = try await rt.status(verbose)
                for _ in 0..<300 where status.info["accelerator"] == "[]" {
                    // sleep: a poll pause; the loop checks the condition
                    try await Task.sleep(for: .milliseconds(100))
                    status = try await rt.status(verbose)
                }
                let libvirt = try #require(status.info["libvirt"])
                try #require(!libvirt.contains("warning"), "\(libvirt)")
                let clock = ContinuousClock()
                var took: [Duration] = []
                for i in 0..<2 {
                    var run = podConfig("lv-row-\(i)")
                    run.runtimeHandler = "libvirt"
                    let start = clock.now
                    let id = try await rt.runPodSandbox(run).podSandboxID
                    took.append(clock.now - start)
                    _ = try await rt.stopPodSandbox(.with { $0.podSandboxID = id })
                    _ = try await rt.removePodSandbox(.with { $0.podSandboxID = id })
                }
                #expect(took[1] < .seconds(10), "libvirt RunPodSandbox took \(took)")
            }
        }
    }
}
