import CRIAPI
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Testing

/// Removing an image while a native container runs from it: the image goes from the store, but its
/// unpacked tree (the container's overlay lower layer) stays until the last container made from
/// it is removed, also across a daemon restart, as containerd keeps a container's snapshot.
@Suite(
    .serialized,
    .enabled(
        if: DaemonHarness.enabled && TestImages.available, "needs the guest image and the test registry (scripts/test)")
)
struct NativeImageRemovalTests {
    static let busybox = "127.0.0.1:5000/busybox:latest"

    @Test func aRemovedImageKeepsItsTreeWhileANativeContainerUsesIt() async throws {
        try await withDaemon(extraConfig: NativePodTests.nativeHandler) { daemon in
            _ = try await daemon.withImages { img in try await pull(img, Self.busybox) }
            let rootfsDir = daemon.stateRoot + "/images/rootfs"
            let trees = try FileManager.default.contentsOfDirectory(atPath: rootfsDir).filter {
                !$0.hasSuffix(".erofs")
            }
            #expect(trees.count == 1, "one unpacked image: \(trees)")
            let tree = rootfsDir + "/" + (trees.first ?? "?")
            let pod = NativePodTests.nativePod("rmi")
            let marker = "2\(UInt16.random(in: 1000...9999))"
            try FileManager.default.createDirectory(atPath: pod.config.logDirectory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: pod.config.logDirectory) }  // test scratch space
            let (podID, cid) = try await daemon.withRuntime { rt in
                let podID = try await rt.runPodSandbox(pod).podSandboxID
                let cid = try await runContainer(
                    rt, containerRequest("rmi", ["sleep", marker], pod: pod, podID: podID, image: Self.busybox))
                return (podID, cid)
            }
            try await daemon.withImages { img in
                _ = try await img.removeImage(.with { $0.image.image = Self.busybox })
                #expect(try await img.listImages(.init()).images.isEmpty)
            }
            // The running container still reads its files, the tree is on disk, a restart keeps it.
            let check = "/bin/busybox true && cat /bin/sh > /dev/null && echo ok"
            let out = try await daemon.withRuntime { rt in try await execScript(rt, cid, check).out }
            #expect(out == "ok\n")
            #expect(FileManager.default.fileExists(atPath: tree + "/bin/busybox"))
            await daemon.stop()
            try await daemon.start()
            #expect(FileManager.default.fileExists(atPath: tree + "/bin/busybox"), "kept by the start's sweep")
            try await daemon.withRuntime { rt in
                #expect(try await execScript(rt, cid, check).out == "ok\n")
                // Its last container removed, the tree goes.
                _ = try await rt.stopContainer(.with { $0.containerID = cid })
                _ = try await rt.removeContainer(.with { $0.containerID = cid })
                #expect(!FileManager.default.fileExists(atPath: tree))
                #expect(!FileManager.default.fileExists(atPath: tree + ".erofs"))
                _ = try await rt.stopPodSandbox(.with { $0.podSandboxID = podID })
                _ = try await rt.removePodSandbox(.with { $0.podSandboxID = podID })
            }
        }
    }
}
