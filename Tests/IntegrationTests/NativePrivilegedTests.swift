import CRIAPI
import Foundation
import Testing

/// A privileged container of a native pod is what a node's system pods (a CNI agent, a CSI node
/// plugin) need: every capability the node has, no seccomp filter, the node's devices, and mounts.
@Suite struct NativePrivilegedTests {
    static func field(_ name: String, in status: String) -> String? {
        status.split(separator: "\n").first { $0.hasPrefix(name + ":") }.map {
            $0.dropFirst(name.count + 1).trimmingCharacters(in: .whitespaces)
        }
    }

    @Test func aPrivilegedNativeContainerHasTheNodesCapabilitiesAndDevices() async throws {
        try await withDaemon(extraConfig: NativePodTests.nativeHandler) { daemon in
            _ = try await daemon.withImages { img in try await pull(img, NativePodTests.busybox) }
            try await daemon.withRuntime { rt in
                var pod = NativePodTests.nativePod("privileged")
                pod.config.linux.securityContext.privileged = true
                try await withTestPod(rt, pod) { podID in
                    var request = containerRequest(
                        "privileged", ["sleep", "1000"], pod: pod, podID: podID, image: NativePodTests.busybox)
                    request.config.linux.securityContext.privileged = true
                    request.config.linux.securityContext.seccomp = .with { $0.profileType = .runtimeDefault }
                    let id = try await runContainer(rt, request)
                    let mine = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
                    let status = try await execScript(rt, id, "cat /proc/self/status").out
                    #expect(Self.field("CapEff", in: status) == Self.field("CapBnd", in: mine), "\(status)")
                    #expect(Self.field("Seccomp", in: status) == "0")
                    // The node's devices: /dev/kmsg and /dev/loop-control open as on the host.
                    let devices = try await execScript(
                        rt, id, "head -c 0 /dev/kmsg && [ -c /dev/loop-control ] && echo devices")
                    #expect(devices.out == "devices\n", "\(devices.out)")
                    let mounted = try await execScript(rt, id, "mkdir -p /m && mount -t tmpfs t /m && echo mounted")
                    #expect(mounted.out == "mounted\n", "\(mounted.out)")
                    // An unprivileged container of the same pod gets neither.
                    let plain = try await runContainer(
                        rt,
                        containerRequest(
                            "plain", ["sleep", "1000"], pod: pod, podID: podID, image: NativePodTests.busybox))
                    let denied = try await execScript(rt, plain, "head -c 0 /dev/kmsg || echo denied")
                    #expect(denied.out.contains("denied\n") && denied.out.contains("No such file"), "\(denied.out)")
                }
            }
        }
    }
}
