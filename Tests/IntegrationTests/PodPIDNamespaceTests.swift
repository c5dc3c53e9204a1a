import CRIAPI
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Testing

/// CRI's container PID namespace modes, in a pod VM and in a native pod: POD (Kubernetes'
/// `shareProcessNamespace`, and crictl's default) puts the pod's containers in one namespace whose
/// PID 1 is the pod's pause; CONTAINER gives one its own; TARGET joins another container's (an
/// ephemeral debug container); NODE is refused by a VM handler.
@Suite(
    .serialized,
    .enabled(
        if: DaemonHarness.enabled && TestImages.available, "needs the guest image and the test registry (scripts/test)")
)
struct PodPIDNamespaceTests {
    typealias Runtime = Runtime_V1_RuntimeService.Client<HTTP2ClientTransport.Posix>
    static let busybox = "127.0.0.1:5000/busybox:latest"

    static func request(
        _ name: String, _ marker: String, _ mode: Runtime_V1_NamespaceMode, pod: Runtime_V1_RunPodSandboxRequest,
        podID: String, target: String = ""
    ) -> Runtime_V1_CreateContainerRequest {
        var r = containerRequest(name, ["sleep", marker], pod: pod, podID: podID, image: busybox)
        r.config.linux.securityContext.namespaceOptions.pid = mode
        r.config.linux.securityContext.namespaceOptions.targetID = target
        return r
    }

    /// `/proc/1/cmdline` inside a container, its NULs as spaces.
    static func pid1(_ rt: Runtime, _ id: String) async throws -> String {
        try await execScript(rt, id, "tr '\\0' ' ' < /proc/1/cmdline").out
    }

    @Test(arguments: ["", "native"])
    func containersShareThePodsPIDNamespaceOnlyWhenAsked(handler: String) async throws {
        try await withDaemon(extraConfig: NativePodTests.nativeHandler) { daemon in
            _ = try await daemon.withImages { img in try await pull(img, Self.busybox) }
            try await daemon.withRuntime { rt in
                var pod = podConfig("pidns-\(UInt32.random(in: 0...UInt32.max))")
                pod.runtimeHandler = handler
                pod.config.linux.securityContext.namespaceOptions.pid = .pod
                var pauses: [Int32] = []
                try await withTestPod(rt, pod) { podID in
                    let m = (1...4).map { _ in "3\(UInt16.random(in: 1000...9999))" }
                    let a = try await runContainer(rt, Self.request("a", m[0], .pod, pod: pod, podID: podID))
                    let b = try await runContainer(rt, Self.request("b", m[1], .pod, pod: pod, podID: podID))
                    // PID 1 of the shared namespace is the pod's pause; each sees the other's process.
                    #expect(try await Self.pid1(rt, b).hasPrefix("cocoon-pause"))
                    let seen = try await execScript(rt, b, "ps -o pid,args").out
                    #expect(seen.contains("sleep \(m[0])") && seen.contains("sleep \(m[1])"), "\(seen)")
                    // One container signals another (the reason to share): a's sleep, not a PID 1,
                    // ends on TERM.
                    let kill = try await execScript(
                        rt, b, "kill -TERM $(ps -o pid,args | awk '$2 == \"sleep\" && $3 == \"\(m[0])\" {print $1}')")
                    #expect(kill.code == 0, "\(kill.out)")
                    #expect(try await waitForExit(rt, a).exitCode == 143)

                    // CONTAINER: a namespace of its own, its process PID 1, the others out of sight.
                    let c = try await runContainer(rt, Self.request("c", m[2], .container, pod: pod, podID: podID))
                    #expect(try await Self.pid1(rt, c) == "sleep \(m[2]) ")
                    #expect(!(try await execScript(rt, c, "ps -o args").out.contains(m[1])))

                    // TARGET: the namespace of b (the pod's), so b's process is in sight.
                    let d = try await runContainer(
                        rt, Self.request("d", m[3], .target, pod: pod, podID: podID, target: b))
                    #expect(try await execScript(rt, d, "ps -o args").out.contains("sleep \(m[1])"))
                    #expect(try await Self.pid1(rt, d).hasPrefix("cocoon-pause"))
                    if !handler.isEmpty, let sleeper = NativePodTests.hostProcesses(["sleep", m[3]]).first {
                        // On the host: the pause is a process of the node, in the namespace it holds.
                        let ns = NativePodTests.namespace("pid", of: sleeper)
                        pauses = NativePodTests.hostProcesses(["cocoon-pause"]).filter {
                            NativePodTests.namespace("pid", of: $0) == ns
                        }
                        #expect(pauses.count == 1, "the pod's pause on the host: \(pauses)")
                    }

                    // Stopping b: its sleep is no PID 1, so TERM ends it (not the KILL after the grace).
                    try await rt.stopContainer(
                        .with {
                            $0.containerID = b
                            $0.timeout = 30
                        })
                    #expect(try await waitForExit(rt, b).exitCode == 143)

                    // Refused with a clear error: an unknown target; the node's PIDs in a VM.
                    await #expect(throws: RPCError.self) {
                        _ = try await rt.createContainer(
                            Self.request("e", "1", .target, pod: pod, podID: podID, target: "nonexistent"))
                    }
                    if handler.isEmpty {
                        do {
                            _ = try await rt.createContainer(Self.request("f", "1", .node, pod: pod, podID: podID))
                            Issue.record("a VM handler gave a container the node's PID namespace")
                        } catch let error as RPCError {
                            #expect(error.code == .invalidArgument && error.message.contains("native"), "\(error)")
                        }
                    }
                    if let crictl = Crictl.path {
                        try await Self.crictlDefaultIsPOD(Crictl(binary: crictl, socket: daemon.socket), podID, daemon)
                    }
                }
                // The pause ends with its pod.
                #expect(pauses.allSatisfy { !processAlive($0) }, "pause left behind: \(pauses)")
            }
        }
    }

    /// crictl, an independent client, sends no namespace options: the container gets mode POD.
    static func crictlDefaultIsPOD(_ cli: Crictl, _ podID: String, _ daemon: DaemonHarness) async throws {
        let dir = daemon.root + "/crictl-pidns"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let podJSON = #"{"metadata": {"name": "p", "namespace": "it", "uid": "u"}}"#
        let ctrJSON = #"{"metadata": {"name": "g"}, "image": {"image": "\#(busybox)"}, "command": ["sleep", "600"]}"#
        try podJSON.write(toFile: dir + "/pod.json", atomically: true, encoding: .utf8)
        try ctrJSON.write(toFile: dir + "/ctr.json", atomically: true, encoding: .utf8)
        let created = try await runCommand(
            cli.prefix + ["create", podID, dir + "/ctr.json", dir + "/pod.json"])
        let id = created.out.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(created.code == 0 && !id.isEmpty, "\(created.stderr)")
        let started = try await runCommand(cli.prefix + ["start", id])
        #expect(started.code == 0, "\(started.stderr)")
        let pid1 = try await runCommand(cli.prefix + ["exec", id, "cat", "/proc/1/cmdline"])
        #expect(pid1.out.hasPrefix("cocoon-pause"), "\(pid1.out) \(pid1.stderr)")
    }

    func waitForExit(_ rt: Runtime, _ id: String) async throws -> Runtime_V1_ContainerStatus {
        for _ in 0..<600 {
            let s = try await rt.containerStatus(.with { $0.containerID = id }).status
            if s.state == .containerExited { return s }
            // sleep: a poll pause; the loop checks the condition
            try await Task.sleep(for: .milliseconds(100))
        }
        throw TestFailure(description: "container \(id) did not exit")
    }
}
