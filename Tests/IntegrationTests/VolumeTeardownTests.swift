import CRIAPI
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import SystemFiles
import Testing

/// The kubelet tears a pod's volumes down on the host while the pod may still run: it unmounts the
/// tmpfs of a Secret or projected volume and removes its directory, also under a hostPath that
/// another pod mounts (a node agent's `/var/lib/kubelet`). A pod's binds live in a mount namespace
/// of the pod's own, so none of this meets EBUSY; an unmount under a HOST_TO_CONTAINER volume is
/// seen in the container. Also CRI's validation suite's read-only mount tests, whose clean-up
/// removes the volume's tmpfs directory while the pod exists. For a VM pod and a native pod.
@Suite(
    .serialized,
    .enabled(
        if: DaemonHarness.enabled && TestImages.available, "needs the guest image and the test registry (scripts/test)")
)
struct VolumeTeardownTests {
    typealias Runtime = Runtime_V1_RuntimeService.Client<HTTP2ClientTransport.Posix>
    static let busybox = "127.0.0.1:5000/busybox:latest"

    @Test(arguments: ["", "native"]) func theKubeletsTeardownUnderARunningPod(handler: String) async throws {
        try await withDaemon(extraConfig: NativePodTests.nativeHandler) { daemon in
            _ = try await daemon.withImages { img in try await pull(img, Self.busybox) }
            // The kubelet's root: a shared mount of its own (the kubelet makes it rshared).
            let kubelet = daemon.root + "/kubelet"
            let secret = kubelet + "/pods/uid1/volumes/kubernetes.io~secret/token"
            let node = kubelet + "/pods/uid2/volumes/kubernetes.io~secret/cert"
            for dir in [secret, node] {
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            }
            #expect(try sh("mount --bind \(kubelet) \(kubelet) && mount --make-rshared \(kubelet)").code == 0)
            defer { _ = try? sh("umount -R -l \(kubelet)") }
            for (dir, text) in [(secret, "token-1"), (node, "cert-2")] {
                #expect(try sh("mount -t tmpfs tmpfs \(dir) && printf \(text) > \(dir)/data").code == 0)
            }
            // The validation suite's read-only host path: a directory with a tmpfs on `tmpfs` in it.
            let rro = daemon.root + "/rro"
            try FileManager.default.createDirectory(atPath: rro + "/tmpfs", withIntermediateDirectories: true)
            #expect(try sh("mount -t tmpfs none \(rro)/tmpfs").code == 0)

            var pod = podConfig("teardown-\(handler.isEmpty ? "vm" : handler)-\(UInt32.random(in: 0...UInt32.max))")
            pod.runtimeHandler = handler
            try await daemon.withRuntime { rt in
                let features = try await rt.status(.init()).runtimeHandlers.first { $0.name == handler }?.features
                #expect(features?.recursiveReadOnlyMounts == true)
                try await withTestPod(rt, pod) { podID in
                    var c = containerRequest("c", ["sleep", "1000"], pod: pod, podID: podID, image: Self.busybox)
                    var agent = Self.volume(kubelet + "/pods", "/host-pods")
                    agent.propagation = .propagationHostToContainer
                    var ro = Self.volume(rro, "/ro", readOnly: true)
                    var recursive = Self.volume(rro, "/rro", readOnly: true)
                    recursive.recursiveReadOnly = true
                    ro.propagation = .propagationPrivate
                    c.config.mounts = [
                        agent, Self.volume(kubelet + "/pods", "/private-pods"),
                        Self.volume(secret, "/var/run/secrets/token", readOnly: true), ro, recursive,
                    ]
                    let id = try await runContainer(rt, c)
                    // The same volume through crictl, an independent client (where the test tools have it).
                    let viaCrictl = try await Self.crictlContainer(daemon, podID, hostPods: kubelet + "/pods")
                    let cert = "/host-pods/uid2/volumes/kubernetes.io~secret/cert"
                    #expect(try await execScript(rt, id, "cat \(cert)/data").out == "cert-2")
                    #expect(try await execScript(rt, id, "cat /var/run/secrets/token/data").out == "token-1")
                    // Non-recursive read-only: the tmpfs below stays writable; recursive: it does not.
                    #expect(try await execScript(rt, id, "touch /ro/tmpfs/file && echo ok").out == "ok\n")
                    let refused = try await execScript(rt, id, "touch /rro/tmpfs/foo")
                    #expect(refused.code != 0 && refused.out.contains("Read-only file system"), "\(refused)")

                    // The kubelet tears both Secret volumes down while the pod runs.
                    #expect(try sh("umount \(secret) && rm -rf \(secret)").code == 0, "secret teardown")
                    let certTeardown = try sh("umount -l \(node) && rmdir \(node)")
                    #expect(certTeardown.code == 0, "teardown under a hostPath volume: \(certTeardown.out)")
                    // The validation suite's clean-up of its host path, with the pod still there.
                    let cleanUp = try sh("umount -l \(rro)/tmpfs && rm -rf \(rro)")
                    #expect(cleanUp.code == 0, "\(cleanUp.out)")
                    // Under HOST_TO_CONTAINER the unmount and the removal are seen; the container's
                    // copy of the Secret it was given stays readable, as with containerd.
                    let gone = try await SharedVolumeTests.poll(
                        rt, id, "test -e \(cert) || echo gone", until: "gone",
                        within: .seconds(5))
                    #expect(gone != nil, "the removed directory is still seen under the HOST_TO_CONTAINER volume")
                    if let (cli, crictlID) = viaCrictl {
                        let seen = try await runCommand(
                            cli.prefix + ["exec", crictlID, "ls", "/host-pods/uid2/volumes"])
                        #expect(seen.code == 0 && seen.out == "kubernetes.io~secret\n", "\(seen.out) \(seen.stderr)")
                        let inner = try await runCommand(
                            cli.prefix + ["exec", crictlID, "ls", "/host-pods/uid2/volumes/kubernetes.io~secret"])
                        #expect(inner.out.isEmpty, "crictl's container still sees \(inner.out)")
                    }
                    #expect(try await execScript(rt, id, "cat /var/run/secrets/token/data").out == "token-1")
                }
            }
            #expect(SharedVolumeTests.leftovers(daemon).isEmpty, "\(SharedVolumeTests.leftovers(daemon))")
        }
    }

    /// A container made by crictl in the pod that mounts the kubelet's pods directory as a node agent
    /// does (HOST_TO_CONTAINER), started, and seeing the cert there; nil without crictl.
    static func crictlContainer(_ daemon: DaemonHarness, _ podID: String, hostPods: String) async throws
        -> (Crictl, String)?
    {
        guard let binary = Crictl.path else { return nil }
        let cli = Crictl(binary: binary, socket: daemon.socket)
        let dir = daemon.root + "/crictl-teardown"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let podJSON = #"{"metadata": {"name": "p", "namespace": "it", "uid": "u"}}"#
        let ctrJSON = #"""
            {"metadata": {"name": "node-agent"}, "image": {"image": "\#(busybox)"}, "command": ["sleep", "600"],
             "mounts": [{"host_path": "\#(hostPods)", "container_path": "/host-pods",
                         "propagation": 1}]}
            """#
        try podJSON.write(toFile: dir + "/pod.json", atomically: true, encoding: .utf8)
        try ctrJSON.write(toFile: dir + "/ctr.json", atomically: true, encoding: .utf8)
        let created = try await runCommand(cli.prefix + ["create", podID, dir + "/ctr.json", dir + "/pod.json"])
        let id = created.out.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(created.code == 0 && !id.isEmpty, "\(created.stderr)")
        #expect(try await runCommand(cli.prefix + ["start", id]).code == 0)
        let cert = try await runCommand(
            cli.prefix + ["exec", id, "cat", "/host-pods/uid2/volumes/kubernetes.io~secret/cert/data"])
        #expect(cert.out == "cert-2", "\(cert.out) \(cert.stderr)")
        let inspected = try await runCommand(cli.prefix + ["inspect", "-o", "json", id])
        #expect(inspected.out.contains("PROPAGATION_HOST_TO_CONTAINER"), "\(inspected.out)")
        return (cli, id)
    }

    static func volume(_ host: String, _ path: String, readOnly: Bool = false) -> Runtime_V1_Mount {
        SharedVolumeTests.volume(host, path, readOnly: readOnly)
    }

    func sh(_ command: String) throws -> (out: String, code: Int32) { try SharedVolumeTests.sh(command) }
}
