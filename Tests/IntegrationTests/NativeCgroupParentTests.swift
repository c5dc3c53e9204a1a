import CRIAPI
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Testing

/// A native pod under the kubelet's pod cgroup in both drivers' forms: a systemd slice name (the
/// kubelet's `cgroupDriver: systemd`) becomes its directory in the slice hierarchy, a cgroupfs path
/// is taken as it is; the pod's agent and each container's cgroup sit below it, and nothing of the
/// pod is left there after its removal.
@Suite(
    .serialized,
    .enabled(
        if: DaemonHarness.enabled && TestImages.available, "needs the guest image and the test registry (scripts/test)")
)
struct NativeCgroupParentTests {
    static let busybox = "127.0.0.1:5000/busybox:latest"

    /// The directories of `path` in every hierarchy of this host (v2, or each v1 one).
    static func hierarchyDirs(_ path: String) -> [String] {
        let root = "/sys/fs/cgroup"
        if FileManager.default.fileExists(atPath: root + "/cgroup.controllers") { return [root + path] }
        return ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).map { "\(root)/\($0)\(path)" }
    }

    @Test(arguments: [true, false])
    func aNativePodSitsUnderItsCgroupParent(systemd: Bool) async throws {
        let n = UInt32.random(in: 0...UInt32.max)
        let (parent, path, top) =
            systemd
            ? ("cocoontest\(n)-pod1.slice", "/cocoontest\(n).slice/cocoontest\(n)-pod1.slice", "/cocoontest\(n).slice")
            : ("/cocoontest\(n)/pod1", "/cocoontest\(n)/pod1", "/cocoontest\(n)")
        defer {
            // The kubelet's own pod cgroups, made here by the pod: removed deepest first.
            for dir in Self.hierarchyDirs(path) + Self.hierarchyDirs(top) { rmdir(dir) }
        }
        try await withDaemon(extraConfig: NativePodTests.nativeHandler) { daemon in
            _ = try await daemon.withImages { img in try await pull(img, Self.busybox) }
            try await daemon.withRuntime { rt in
                var pod = NativePodTests.nativePod("cgparent")
                pod.config.linux.cgroupParent = parent
                var podID = ""
                try await withTestPod(rt, pod) { id in
                    podID = id
                    let marker = "4\(UInt16.random(in: 1000...9999))"
                    let cid = try await runContainer(
                        rt, containerRequest("sleeper", ["sleep", marker], pod: pod, podID: id, image: Self.busybox))
                    var pids = NativePodTests.hostProcesses(["sleep", marker])
                    for _ in 0..<100 where pids.isEmpty {
                        // sleep: a poll pause; the loop checks the condition
                        try await Task.sleep(for: .milliseconds(100))
                        pids = NativePodTests.hostProcesses(["sleep", marker])
                    }
                    let pid = try #require(pids.first)
                    let cgroups = try String(contentsOfFile: "/proc/\(pid)/cgroup", encoding: .utf8)
                    let expected = "\(path)/cocoon-\(id.prefix(12))/\(cid)"
                    #expect(cgroups.contains(expected), "\(expected) in \(cgroups)")
                }
                let podDirs = Self.hierarchyDirs("\(path)/cocoon-\(podID.prefix(12))")
                #expect(podDirs.allSatisfy { !FileManager.default.fileExists(atPath: $0) }, "left: \(podDirs)")
            }
        }
    }
}
