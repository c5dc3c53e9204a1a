import CRIAPI
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import SystemFiles
import Testing

/// The `native` handler: pods without a VM, their containers real processes on this host in the
/// pod's namespaces (ContainerCore, run by the pod's own agent on the host), the pod's network from
/// the real CNI plugins, or the node's for a hostNetwork pod.
@Suite(
    .serialized,
    .enabled(
        if: DaemonHarness.enabled && TestImages.available, "needs the guest image and the test registry (scripts/test)")
)
struct NativePodTests {
    typealias Runtime = Runtime_V1_RuntimeService.Client<HTTP2ClientTransport.Posix>
    static let busybox = "127.0.0.1:5000/busybox:latest"
    static let nativeHandler = "[handlers.native]\nbackend = \"native\"\n"

    static func nativePod(_ name: String) -> Runtime_V1_RunPodSandboxRequest {
        var pod = podConfig(name + "-\(UInt32.random(in: 0...UInt32.max))")
        pod.runtimeHandler = "native"
        pod.config.hostname = name
        return pod
    }

    /// Host processes whose command line is exactly `argv`.
    static func hostProcesses(_ argv: [String]) -> [Int32] {
        let want = argv.joined(separator: "\0") + "\0"
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { Int32($0) }.filter {
            (try? String(contentsOfFile: "/proc/\($0)/cmdline", encoding: .utf8)) == want
        }
    }

    static func netns(of pid: Int32) -> String { namespace("net", of: pid) }

    static func namespace(_ kind: String, of pid: Int32) -> String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/ns/\(kind)")) ?? "?"
    }

    /// What a native pod may leave on the host: its cgroup, its network namespace, mounts naming it.
    static func leftovers(_ daemon: DaemonHarness, podID: String) -> [String] {
        let short = String(podID.prefix(12))
        var out = MountTable.mountPoints().filter { $0.contains(podID) || $0.contains(short) }.map { "mount " + $0 }
        // The pod's cgroup in the unified hierarchy (v2) or in any v1 hierarchy.
        let hierarchies = ((try? FileManager.default.contentsOfDirectory(atPath: "/sys/fs/cgroup")) ?? []).map {
            "/sys/fs/cgroup/\($0)"
        }
        for root in ["/sys/fs/cgroup"] + hierarchies
        where FileManager.default.fileExists(atPath: "\(root)/cocoon/cocoon-\(short)") {
            out.append("cgroup \(root)/cocoon/cocoon-\(short)")
        }
        let namespaces = (try? FileManager.default.contentsOfDirectory(atPath: "/var/run/netns")) ?? []
        out += namespaces.filter { $0.contains(short) }.map { "netns " + $0 }
        out += HostProcessList.withArgument("cocoon-" + short).map { "process \($0)" }
        return out
    }

    @Test func aNativePodRunsItsContainersOnTheHostInThePodsNamespaces() async throws {
        try await withDaemon(extraConfig: Self.nativeHandler) { daemon in
            _ = try await daemon.withImages { img in try await pull(img, Self.busybox) }
            let vol = daemon.root + "/vol"
            try FileManager.default.createDirectory(atPath: vol, withIntermediateDirectories: true)
            try await daemon.withRuntime { rt in
                let pod = Self.nativePod("native")
                var podID = ""
                try await withTestPod(rt, pod) { id in
                    podID = id
                    let status = try await rt.podSandboxStatus(.with { $0.podSandboxID = id })
                    #expect(status.status.state == .sandboxReady)
                    let podIP = status.status.network.ip
                    #expect(!podIP.isEmpty, "a native pod gets its address from CNI")
                    let marker = "1\(UInt16.random(in: 1000...9999))"
                    var request = containerRequest(
                        "native", ["sh", "-c", "echo hello from native; exec sleep \(marker)"], pod: pod, podID: id,
                        image: Self.busybox)
                    request.config.mounts = [
                        .with {
                            $0.hostPath = vol
                            $0.containerPath = "/vol"
                        }
                    ]
                    let cid = try await runContainer(rt, request)

                    // The container is a process of this host (no VM), in the pod's network namespace
                    // (once its sh, started by then, has exec'd the sleep).
                    var pids = Self.hostProcesses(["sleep", marker])
                    for _ in 0..<100 where pids.isEmpty {
                        // sleep: a poll pause; the loop checks the condition
                        try await Task.sleep(for: .milliseconds(100))
                        pids = Self.hostProcesses(["sleep", marker])
                    }
                    #expect(pids.count == 1, "the container's process is on the host: \(pids)")
                    let podNetns = try #require(
                        ((try? FileManager.default.contentsOfDirectory(atPath: "/var/run/netns")) ?? [])
                            .first { $0.contains(String(id.prefix(12))) })
                    let nsFile = "/var/run/netns/" + podNetns
                    var st = stat()
                    #expect(stat(nsFile, &st) == 0)
                    if let pid = pids.first {
                        #expect(Self.netns(of: pid) == "net:[\(st.st_ino)]", "in the pod's CNI namespace")
                        #expect(Self.netns(of: pid) != Self.netns(of: getpid()))
                    }
                    let addr = try await execScript(rt, cid, "ip -4 addr show eth0")
                    #expect(addr.out.contains(podIP + "/"), "\(addr.out)")
                    #expect(try await execScript(rt, cid, "hostname").out == "native\n")
                    #expect(try await execScript(rt, cid, "echo written > /vol/file").code == 0)
                    #expect(try String(contentsOfFile: vol + "/file", encoding: .utf8) == "written\n")
                    let log = try String(contentsOfFile: pod.config.logDirectory + "/native.log", encoding: .utf8)
                    #expect(log.contains("stdout F hello from native"), "\(log)")
                    // Nothing of the container's root filesystem is mounted in the host's namespace.
                    #expect(!MountTable.mountPoints().contains { $0.contains(cid) })
                }
                #expect(Self.hostProcesses(["sleep", "x"]).isEmpty)
                #expect(Self.leftovers(daemon, podID: podID) == [])
            }
        }
    }

    @Test func hostNetworkAndHostPIDPodsShareTheNodesNamespacesAndVMHandlersRefuseThem() async throws {
        try await withDaemon(extraConfig: Self.nativeHandler) { daemon in
            _ = try await daemon.withImages { img in try await pull(img, Self.busybox) }
            try await daemon.withRuntime { rt in
                var pod = Self.nativePod("hostnet")
                pod.config.linux.securityContext.namespaceOptions.network = .node
                try await withTestPod(rt, pod) { id in
                    let marker = "2\(UInt16.random(in: 1000...9999))"
                    let cid = try await runContainer(
                        rt, containerRequest("hostnet", ["sleep", marker], pod: pod, podID: id, image: Self.busybox))
                    let pids = Self.hostProcesses(["sleep", marker])
                    #expect(pids.count == 1)
                    if let pid = pids.first { #expect(Self.netns(of: pid) == Self.netns(of: getpid())) }
                    // The node's interfaces, every one of them, are the container's.
                    let links = try await execScript(rt, cid, "ls /sys/class/net").out.split(separator: "\n").map(
                        String.init)
                    let hostLinks = try FileManager.default.contentsOfDirectory(atPath: "/sys/class/net")
                    #expect(Set(links) == Set(hostLinks), "container: \(links), host: \(hostLinks)")
                    let status = try await rt.podSandboxStatus(.with { $0.podSandboxID = id })
                    #expect(status.status.linux.namespaces.options.network == .node)
                }
                // The node's PID and IPC namespaces: the container sees the node's processes, and a
                // child it leaves behind ends with its process (it has no PID 1 of its own to end it).
                var hostPID = Self.nativePod("hostpid")
                hostPID.config.linux.securityContext.namespaceOptions.pid = .node
                hostPID.config.linux.securityContext.namespaceOptions.ipc = .node
                try await withTestPod(rt, hostPID) { id in
                    let (left, main) = ("4\(UInt16.random(in: 1000...9999))", "5\(UInt16.random(in: 1000...9999))")
                    var request = containerRequest(
                        "hostpid", ["sh", "-c", "sleep \(left) & exec sleep \(main)"], pod: hostPID, podID: id,
                        image: Self.busybox)
                    request.config.linux.securityContext.namespaceOptions.pid = .node  // as the kubelet sends it
                    let cid = try await runContainer(rt, request)
                    // sh forks its background sleep and execs the other: both may still be on the way.
                    var pids: [Int32] = []
                    for _ in 0..<100 {
                        pids = Self.hostProcesses(["sleep", main]) + Self.hostProcesses(["sleep", left])
                        if pids.count == 2 { break }
                        // sleep: a poll pause; the loop checks the condition
                        try await Task.sleep(for: .milliseconds(100))
                    }
                    #expect(pids.count == 2)
                    for pid in pids {
                        #expect(Self.namespace("pid", of: pid) == Self.namespace("pid", of: getpid()))
                        #expect(Self.namespace("ipc", of: pid) == Self.namespace("ipc", of: getpid()))
                    }
                    let initName = try String(contentsOfFile: "/proc/1/comm", encoding: .utf8)
                    #expect(try await execScript(rt, cid, "cat /proc/1/comm").out == initName)
                    let status = try await rt.podSandboxStatus(.with { $0.podSandboxID = id })
                    #expect(status.status.linux.namespaces.options.pid == .node)
                    #expect(status.status.linux.namespaces.options.ipc == .node)
                    try await rt.stopContainer(
                        .with {
                            $0.containerID = cid
                            $0.timeout = 5
                        })
                    #expect(Self.hostProcesses(["sleep", main]).isEmpty)
                    // The child gets its SIGKILL when the container's process is reaped; it dies as
                    // soon as it runs next, which may be after the stop answered (containerd's shim
                    // also reports the exit once `kill --all` has signalled, without waiting). It once
                    // was still there when checked at once. Unkilled, it would sleep for hours.
                    var outlived = Self.hostProcesses(["sleep", left])
                    for _ in 0..<100 where !outlived.isEmpty {
                        // sleep: a poll pause; the loop checks the condition
                        try await Task.sleep(for: .milliseconds(50))
                        outlived = Self.hostProcesses(["sleep", left])
                    }
                    #expect(outlived.isEmpty, "the container's child outlived it")
                }
                var vmPod = podConfig("hostnet-vm-\(UInt32.random(in: 0...UInt32.max))")
                vmPod.config.linux.securityContext.namespaceOptions.network = .node
                do {
                    _ = try await rt.runPodSandbox(vmPod)
                    Issue.record("a VM handler ran a hostNetwork pod")
                } catch let error as RPCError {
                    #expect(error.code == .invalidArgument)
                    #expect(error.message.contains("native"), "\(error.message)")
                }
            }
        }
    }

    @Test func execAndPortForwardReachANativePodOverTheStreamingServer() async throws {
        try await withDaemon(extraConfig: Self.nativeHandler) { daemon in
            _ = try await daemon.withImages { img in try await pull(img, Self.busybox) }
            try await daemon.withRuntime { rt in
                let pod = Self.nativePod("streams")
                try await withTestPod(rt, pod) { podID in
                    let serve = "mkdir -p /www && seq 1 200000 > /www/blob && exec httpd -f -p 8080 -h /www"
                    let id = try await runContainer(
                        rt, containerRequest("web", ["sh", "-c", serve], pod: pod, podID: podID, image: Self.busybox))
                    let ctl = CocoonCtl(socket: daemon.socket)
                    let input = NSTemporaryDirectory() + "cocoon-stdin-\(UUID().uuidString.prefix(8))"
                    FileManager.default.createFile(atPath: input, contents: try randomBytes(4 << 20))
                    defer { try? FileManager.default.removeItem(atPath: input) }  // test scratch
                    for transport in ["spdy", "websocket"] {
                        let echo = try await runCommand(
                            ctl.argv("exec", ["--transport", transport, "-i", id, "cat"]), stdinFile: input)
                        #expect(echo.code == 0, "\(transport): \(echo.stderr)")
                        #expect(
                            echo.stdout == FileManager.default.contents(atPath: input), "\(transport): 4 MiB differ")
                    }
                    // Port-forward dials inside the pod's network namespace (the server listens there only).
                    let local = freePort()
                    let forward = try Command(ctl.argv("port-forward", [podID, "\(local):8080"]))
                    defer { forward.kill() }
                    try await forward.waitForOutput("Forwarding from 127.0.0.1:\(local)")
                    let body = httpBody(
                        try await TCP.exchange(port: local, send: Array("GET /blob HTTP/1.0\r\n\r\n".utf8)))
                    #expect(body == Array((1...200_000).map { "\($0)\n" }.joined().utf8), "\(body.count) bytes")
                }
            }
        }
    }

    @Test func nativeContainersOutliveAKilledDaemon() async throws {
        try await withDaemon(extraConfig: Self.nativeHandler) { daemon in
            _ = try await daemon.withImages { img in try await pull(img, Self.busybox) }
            let pod = Self.nativePod("survive")
            let logDir = pod.config.logDirectory
            try FileManager.default.createDirectory(atPath: logDir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: logDir) }  // test scratch space
            let script = "i=0; while true; do echo tick$i; i=$((i+1)); sleep 0.2; done"
            let (podID, cid, quitter, flood) = try await daemon.withRuntime { rt in
                let id = try await rt.runPodSandbox(pod).podSandboxID
                let cid = try await runContainer(
                    rt, containerRequest("ticker", ["sh", "-c", script], pod: pod, podID: id, image: Self.busybox))
                // One that ends while no daemon is there.
                let quitter = try await runContainer(
                    rt,
                    containerRequest(
                        "quitter", ["sh", "-c", "sleep 1.5; exit 7"], pod: pod, podID: id, image: Self.busybox))
                // One that writes more than an agent keeps for an absent daemon (4 MiB), all of it
                // while no daemon is there: its log must still have every line.
                let flood = try await runContainer(
                    rt,
                    containerRequest(
                        "flood", ["sh", "-c", "sleep 1; seq 1 \(Self.floodLines)"], pod: pod, podID: id,
                        image: Self.busybox))
                return (id, cid, quitter, flood)
            }
            await daemon.crash()
            let crashedAt = Int64(Date().timeIntervalSince1970 * 1e9)
            // sleep: the containers run on (and one ends) while no daemon exists
            try await Task.sleep(for: .seconds(3))
            let restartedAt = Int64(Date().timeIntervalSince1970 * 1e9)
            try await daemon.start()
            try await daemon.withRuntime { rt in
                let status = try await rt.containerStatus(.with { $0.containerID = cid })
                #expect(status.status.state == .containerRunning)
                var ended = try await rt.containerStatus(.with { $0.containerID = quitter }).status
                for _ in 0..<50 where ended.state != .containerExited {
                    // sleep: a poll pause; the loop checks the condition
                    try await Task.sleep(for: .milliseconds(100))
                    ended = try await rt.containerStatus(.with { $0.containerID = quitter }).status
                }
                #expect(ended.state == .containerExited && ended.exitCode == 7, "\(ended)")
                #expect(ended.finishedAt > crashedAt && ended.finishedAt < restartedAt, "finished while no daemon ran")
                #expect(try await execScript(rt, cid, "echo alive").out == "alive\n")
                // The log goes on without a gap across the 3 s without a daemon: the pod's agent
                // writes it, as a containerd shim does, so no line is in flight in a killed daemon.
                let text = try await waitForTicks(logDir + "/ticker.log", atLeast: 12)
                let ticks = text.split(separator: "\n").compactMap { line in
                    line.split(separator: " ").last.flatMap { $0.hasPrefix("tick") ? Int($0.dropFirst(4)) : nil }
                }
                #expect(ticks.count >= 12 && ticks == Array(0..<ticks.count), "ticks \(ticks.prefix(20))")
                // Its exit is reported once its output is all in the log: the log is read then.
                for _ in 0..<600 {
                    if try await rt.containerStatus(.with { $0.containerID = flood }).status.state == .containerExited {
                        break
                    }
                    // sleep: a poll pause; the loop checks the condition
                    try await Task.sleep(for: .milliseconds(100))
                }
                let (lines, firstGap) = Self.numberedLines(FileManager.default.contents(atPath: logDir + "/flood.log"))
                #expect(
                    lines == Self.floodLines && firstGap == nil, "flood: \(lines) lines, first gap at \(firstGap ?? 0)")
                try await rt.stopPodSandbox(.with { $0.podSandboxID = podID })
                try await rt.removePodSandbox(.with { $0.podSandboxID = podID })
            }
            #expect(Self.leftovers(daemon, podID: podID) == [])
        }
    }

    static let floodLines = 800_000

    /// How many lines of a CRI log end in the numbers 1, 2, 3, ... in order, and the line number of
    /// the first that does not (nil: none). One pass over the bytes (the log is ~40 MB).
    static func numberedLines(_ data: Data?) -> (count: Int, firstGap: Int?) {
        guard let data else { return (0, 1) }
        var count = 0
        var value = 0
        var digitsOnly = false  // since the line's last space
        for byte in data {
            switch byte {
            case 0x0A:
                guard digitsOnly, value == count + 1 else { return (count, count + 1) }
                count += 1
                (value, digitsOnly) = (0, false)
            case 0x20: (value, digitsOnly) = (0, true)
            case 0x30...0x39: if digitsOnly { value = min(value, 1 << 40) * 10 + Int(byte - 0x30) }
            default: digitsOnly = false
            }
        }
        return (count, nil)
    }

    private func waitForTicks(_ path: String, atLeast count: Int) async throws -> String {
        for _ in 0..<150 {
            let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
            if text.components(separatedBy: "tick").count > count { return text }
            // sleep: a poll pause; the loop checks the condition
            try await Task.sleep(for: .milliseconds(100))
        }
        return (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
    }
}
