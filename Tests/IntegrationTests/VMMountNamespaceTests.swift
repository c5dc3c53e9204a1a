import CRIAPI
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Testing

/// A pod's QEMU runs in a private mount namespace of its own, copied from the host's when it
/// starts. Such a copy must not hold the network namespace pins of the pods that exist then: a
/// private copy keeps each of those namespaces alive, after its pod is gone, for as long as this
/// QEMU runs.
@Suite(
    .serialized,
    .enabled(
        if: DaemonHarness.enabled && TestImages.available, "needs the guest image and the test registry (scripts/test)")
)
struct VMMountNamespaceTests {
    @Test func aQEMUHoldsNoOtherPodsNetworkNamespace() async throws {
        try await withDaemon { daemon in
            try await daemon.withRuntime { rt in
                let first = podConfig("netns-a-\(UInt32.random(in: 0...UInt32.max))")
                try await withTestPod(rt, first) { firstID in
                    let second = podConfig("netns-b-\(UInt32.random(in: 0...UInt32.max))")
                    try await withTestPod(rt, second) { secondID in
                        for id in [firstID, secondID] {
                            let pid = try #require(try await vmInfo(rt, id)["pid"] as? Int)
                            let mounts = try String(contentsOfFile: "/proc/\(pid)/mountinfo", encoding: .utf8)
                            let pins = mounts.split(separator: "\n").filter { $0.contains("/netns") }
                            #expect(pins.isEmpty, "pod \(id.prefix(12))'s QEMU holds \(pins)")
                        }
                    }
                }
            }
        }
    }
}
