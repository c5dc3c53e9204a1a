import CRIAPI
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Testing

/// Containers through cocoond and a real pod VM: busybox pulled from the local registry, its EROFS
/// image hot-plugged into the VM, processes run by the guest agent with ContainerCore.
@Suite(
    .serialized,
    .enabled(
        if: DaemonHarness.enabled && TestImages.available, "needs the guest image and the test registry (scripts/test)")
)
struct ContainerLifecycleTests {
    typealias Runtime = Runtime_V1_RuntimeService.Client<HTTP2ClientTransport.Posix>
    static let busybox = "127.0.0.1:5000/busybox:latest"

    func container(_ name: String, _ command: [String], pod: Runtime_V1_RunPodSandboxRequest, podID: String)
        -> Runtime_V1_CreateContainerRequest
    {
        containerRequest(name, command, pod: pod, podID: podID, image: Self.busybox)
    }

    /// Polls for up to 90 s (or `seconds`): under emulation, with other suites booting VMs beside, a
    /// container can be slow.
    func waitUntilExited(_ rt: Runtime, _ id: String, seconds: Int = 90) async throws -> Runtime_V1_ContainerStatus {
        for _ in 0..<(seconds * 10) {
            let s = try await rt.containerStatus(.with { $0.containerID = id }).status
            if s.state == .containerExited { return s }
            // sleep: a poll pause; the loop checks the condition
            try await Task.sleep(for: .milliseconds(100))
        }
        throw TestFailure(description: "container \(id) did not exit")
    }

    /// The log file once it contains `text` (polled for up to 30 s), or what it holds then.
    func waitForLog(_ path: String, containing text: String) async throws -> String {
        var log = ""
        for _ in 0..<300 {
            log = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""  // try?: not written yet
            if log.contains(text) { break }
            // sleep: a poll pause; the loop checks the condition
            try await Task.sleep(for: .milliseconds(100))
        }
        return log
    }

    func exec(_ rt: Runtime, _ id: String, _ cmd: [String], timeout: Int64 = 0) async throws -> (String, String, Int32)
    {
        let r = try await rt.execSync(
            .with {
                $0.containerID = id
                $0.cmd = cmd
                $0.timeout = timeout
            })
        return (String(decoding: r.stdout, as: UTF8.self), String(decoding: r.stderr, as: UTF8.self), r.exitCode)
    }

    /// A daemon with busybox pulled and one pod (hostname `cocoon-pod`, a fresh log directory).
    func withPod(_ body: (Runtime, Runtime_V1_RunPodSandboxRequest, String, String) async throws -> Void) async throws {
        try await withDaemon { daemon in
            _ = try await daemon.withImages { img in try await pull(img, Self.busybox) }
            try await daemon.withRuntime { rt in
                var pod = podConfig("ctr-\(UInt32.random(in: 0...UInt32.max))")
                pod.config.hostname = "cocoon-pod"
                try await withTestPod(rt, pod) { podID in try await body(rt, pod, podID, pod.config.logDirectory) }
            }
        }
    }

    /// Creates and starts a container; returns its id.
    func run(_ rt: Runtime, _ request: Runtime_V1_CreateContainerRequest) async throws -> String {
        try await runContainer(rt, request)
    }

    @Test func execSyncRunsInTheContainerWithItsEnvMountsAndHostname() async throws {
        try await withPod { rt, pod, podID, logDir in
            // A host file bind-mounted read-only.
            let shared = logDir + "/greeting"
            try "hello from the host\n".write(toFile: shared, atomically: true, encoding: .utf8)
            var serverReq = container("server", ["sleep", "1000"], pod: pod, podID: podID)
            serverReq.config.mounts = [
                .with {
                    $0.hostPath = shared
                    $0.containerPath = "/etc/greeting"
                    $0.readonly = true
                }
            ]
            serverReq.config.envs = [
                .with {
                    $0.key = "GREETING"
                    $0.value = "hi"
                }
            ]
            let server = try await rt.createContainer(serverReq).containerID
            var status = try await rt.containerStatus(.with { $0.containerID = server }).status
            #expect(status.state == .containerCreated)
            try await rt.startContainer(.with { $0.containerID = server })
            status = try await rt.containerStatus(.with { $0.containerID = server }).status
            #expect(status.state == .containerRunning)
            #expect(status.startedAt > 0 && status.logPath == logDir + "/server.log")

            // The guest kernel, exit codes, env, the mount, the rootfs is writable.
            let (uname, _, code) = try await exec(rt, server, ["uname", "-r"])
            #expect(code == 0 && uname.contains("cloud-amd64"), "\(uname)")
            #expect(
                try await exec(rt, server, ["sh", "-c", "echo out; echo err >&2; exit 3"]) == ("out\n", "err\n", 3))
            let env = try await exec(rt, server, ["sh", "-c", "echo $GREETING; hostname; cat /etc/greeting"]).0
            #expect(env == "hi\ncocoon-pod\nhello from the host\n")
            let (_, roErr, roCode) = try await exec(rt, server, ["sh", "-c", "echo x > /etc/greeting"])
            #expect(roCode != 0 && roErr.contains("Read-only"), "\(roErr)")
            #expect(try await exec(rt, server, ["sh", "-c", "touch /new && echo ok"]).0 == "ok\n")
            // The timeout fires and the command is killed.
            let started = ContinuousClock.now
            await #expect(throws: RPCError.self) { _ = try await exec(rt, server, ["sleep", "30"], timeout: 1) }
            #expect(ContinuousClock.now - started < .seconds(10))
        }
    }

    @Test func logsAreInCRIFormatAndFollowARotation() async throws {
        try await withPod { rt, pod, podID, logDir in
            let command = ["sh", "-c", "echo started; echo oops >&2; printf unterminated; exec sleep 1000"]
            _ = try await run(rt, container("server", command, pod: pod, podID: podID))
            let log = try await waitForLog(logDir + "/server.log", containing: " stderr F oops")
            let lines = log.split(separator: "\n")
            let first = try #require(lines.first { $0.hasSuffix(" stdout F started") })
            #expect(first.split(separator: " ")[0].count == 30, "RFC3339 with nanoseconds: \(first)")
            #expect(lines.contains { $0.hasSuffix(" stderr F oops") }, "\(log)")

            // The kubelet renames the file and asks for a reopen; new output goes to a new file.
            let ticker = try await run(
                rt,
                container("ticker", ["sh", "-c", "while true; do echo tick; sleep 0.2; done"], pod: pod, podID: podID))
            _ = try await waitForLog(logDir + "/ticker.log", containing: " stdout F tick")
            try FileManager.default.moveItem(atPath: logDir + "/ticker.log", toPath: logDir + "/ticker.log.1")
            try await rt.reopenContainerLog(.with { $0.containerID = ticker })
            let rotated = try await waitForLog(logDir + "/ticker.log", containing: " stdout F tick")
            #expect(rotated.contains(" stdout F tick"), "new output lands in the reopened file: \(rotated)")
        }
    }

    @Test func eachContainerHasItsOwnProcessesAndExitCode() async throws {
        try await withPod { rt, pod, podID, logDir in
            let server = try await run(rt, container("server", ["sleep", "1000"], pod: pod, podID: podID))
            let command = ["sh", "-c", "ls /proc | grep -c '^[0-9]'; exit 7"]
            let worker = try await run(rt, container("worker", command, pod: pod, podID: podID))
            let done = try await waitUntilExited(rt, worker)
            #expect(done.exitCode == 7 && done.reason == "Error" && done.finishedAt >= done.startedAt)
            let workerLog = (try? String(contentsOfFile: logDir + "/worker.log", encoding: .utf8)) ?? ""
            // sh, ls and grep (grep may not have started yet when ls reads /proc): never the pod's others.
            #expect(
                workerLog.contains(" stdout F 3") || workerLog.contains(" stdout F 2"),
                "the worker sees only its own processes: \(workerLog)")

            // List with filters.
            let all = try await rt.listContainers(.init()).containers
            #expect(Set(all.map(\.id)) == [server, worker])
            let running = try await rt.listContainers(.with { $0.filter.state.state = .containerRunning }).containers
            #expect(running.map(\.id) == [server])
            let labelled = try await rt.listContainers(.with { $0.filter.labelSelector = ["app": "worker"] }).containers
            #expect(labelled.map(\.id) == [worker])
        }
    }

    @Test func stopEscalatesToSIGKILLAndRemovalIsIdempotent() async throws {
        try await withPod { rt, pod, podID, _ in
            let server = try await run(rt, container("server", ["sleep", "1000"], pod: pod, podID: podID))
            // The process ignores SIGTERM, so the timeout escalates to SIGKILL.
            let command = ["sh", "-c", "trap '' TERM; while true; do sleep 1; done"]
            let stubborn = try await run(rt, container("stubborn", command, pod: pod, podID: podID))
            // sleep: the shell sets its trap first (no signal for that from outside the guest)
            try await Task.sleep(for: .milliseconds(300))
            let stopStart = ContinuousClock.now
            try await rt.stopContainer(
                .with {
                    $0.containerID = stubborn
                    $0.timeout = 2
                })
            #expect(ContinuousClock.now - stopStart >= .seconds(2))
            let stopped = try await rt.containerStatus(.with { $0.containerID = stubborn }).status
            #expect(stopped.state == .containerExited && stopped.exitCode == 137)
            try await rt.stopContainer(
                .with {
                    $0.containerID = stubborn
                    $0.timeout = 2
                })  // idempotent

            // Remove one container twice; the stopped pod takes the rest with it.
            try await rt.removeContainer(.with { $0.containerID = stubborn })
            try await rt.removeContainer(.with { $0.containerID = stubborn })
            #expect(try await rt.listContainers(.init()).containers.map(\.id) == [server])
            try await rt.stopPodSandbox(.with { $0.podSandboxID = podID })
            #expect(try await rt.containerStatus(.with { $0.containerID = server }).status.state == .containerExited)
            try await rt.removePodSandbox(.with { $0.podSandboxID = podID })
            #expect(try await rt.listContainers(.init()).containers.isEmpty)
        }
    }

    @Test func limitsSecurityAndLocalhost() async throws {
        try await withDaemon(extraConfig: "[containers]\npids_limit = 32") { daemon in
            _ = try await daemon.withImages { img in try await pull(img, Self.busybox) }
            try await daemon.withRuntime { rt in
                let pod = podConfig("ctr-lim-\(UInt32.random(in: 0...UInt32.max))")
                let podID = try await rt.runPodSandbox(pod).podSandboxID
                // A memory hog over its cgroup limit is OOM-killed and reported so.
                var hog = container(
                    "hog", ["sh", "-c", "x=$(head -c 48000000 /dev/zero | tr '\\0' a); echo survived"], pod: pod,
                    podID: podID)
                hog.config.logPath = ""
                hog.config.linux.resources.memoryLimitInBytes = 16 << 20
                let hogID = try await rt.createContainer(hog).containerID
                try await rt.startContainer(.with { $0.containerID = hogID })
                // Up to 3 minutes: near its limit the guest reclaims (and refaults) file pages before
                // it kills, which under TCG on a loaded node once took over 90 s.
                let hogStatus = try await waitUntilExited(rt, hogID, seconds: 180)
                #expect(
                    hogStatus.reason == "OOMKilled" && hogStatus.exitCode == 137,
                    "\(hogStatus.reason) \(hogStatus.exitCode)")

                // RuntimeDefault seccomp refuses unshare, for the process and its execs alike; dropped
                // capabilities stay dropped.
                var web = container(
                    "web",
                    ["sh", "-c", "mkdir -p /www && echo pong > /www/index.html && exec httpd -f -p 8080 -h /www"],
                    pod: pod, podID: podID)
                web.config.logPath = ""
                web.config.linux.securityContext.seccomp.profileType = .runtimeDefault
                web.config.linux.securityContext.capabilities.dropCapabilities = ["NET_RAW"]
                let webID = try await rt.createContainer(web).containerID
                try await rt.startContainer(.with { $0.containerID = webID })
                let (_, unshareErr, unshareCode) = try await exec(rt, webID, ["busybox", "unshare", "-U", "true"])
                #expect(unshareCode != 0 && unshareErr.contains("Operation not permitted"), "\(unshareErr)")
                let (capLine, _, _) = try await exec(rt, webID, ["sh", "-c", "grep CapBnd /proc/self/status"])
                // containerd's default set (00000000a80425fb) without CAP_NET_RAW.
                #expect(capLine.hasSuffix("00000000a80405fb\n"), "\(capLine)")

                // Stats from the container's cgroup; limits updated in place.
                // A guest that has not answered a usage request within its first 2 s (a loaded CI
                // machine) is reported with zeros until it does: ask again, as the kubelet does.
                var stats = try await rt.containerStats(.with { $0.containerID = webID }).stats
                for _ in 0..<10 where stats.memory.workingSetBytes.value == 0 {
                    stats = try await rt.containerStats(.with { $0.containerID = webID }).stats
                }
                #expect(stats.memory.workingSetBytes.value > 0 && stats.cpu.usageCoreNanoSeconds.value > 0, "\(stats)")
                #expect(try await exec(rt, webID, ["sh", "-c", "cat /sys/fs/cgroup/memory.max"]).0 == "max\n")
                try await rt.updateContainerResources(
                    .with {
                        $0.containerID = webID
                        $0.linux.memoryLimitInBytes = 64 << 20
                    })
                #expect(try await exec(rt, webID, ["sh", "-c", "cat /sys/fs/cgroup/memory.max"]).0 == "67108864\n")

                // A second container reaches the first over localhost.
                var client = container("client", ["sleep", "1000"], pod: pod, podID: podID)
                client.config.logPath = ""
                let clientID = try await rt.createContainer(client).containerID
                try await rt.startContainer(.with { $0.containerID = clientID })
                var body = ""
                for _ in 0..<30 {
                    body = (try? await exec(rt, clientID, ["sh", "-c", "wget -qO- http://127.0.0.1:8080/"]))?.0 ?? ""
                    if body == "pong\n" { break }
                    // sleep: a poll pause; the loop checks the condition
                    try await Task.sleep(for: .milliseconds(200))
                }
                #expect(body == "pong\n")
                // pids.max from [containers] pids_limit caps a fork bomb: the shell soon cannot fork.
                #expect(try await exec(rt, clientID, ["sh", "-c", "cat /sys/fs/cgroup/pids.max"]).0 == "32\n")
                let (_, forkErr, forkCode) = try await exec(
                    rt, clientID, ["sh", "-c", "for i in $(seq 60); do sleep 3 & done; echo all-forked"])
                #expect(forkCode != 0 && forkErr.contains("can't fork"), "\(forkErr)")
                let podStats = try await rt.podSandboxStats(.with { $0.podSandboxID = podID }).stats
                #expect(Set(podStats.linux.containers.map(\.attributes.id)).isSuperset(of: [webID, clientID]))
                #expect(podStats.linux.memory.workingSetBytes.value >= stats.memory.workingSetBytes.value / 2)
                #expect(try await rt.listPodSandboxStats(.init()).stats.map(\.attributes.id) == [podID])
                try await rt.removePodSandbox(.with { $0.podSandboxID = podID })
            }
        }
    }

    @Test func containersSurviveADaemonRestart() async throws {
        try await withDaemon { daemon in
            _ = try await daemon.withImages { img in try await pull(img, Self.busybox) }
            let pod = podConfig("ctr-restart-\(UInt32.random(in: 0...UInt32.max))")
            let logDir = pod.config.logDirectory
            try? FileManager.default.removeItem(atPath: logDir)
            defer { try? FileManager.default.removeItem(atPath: logDir) }
            let (podID, counter, quitter) = try await daemon.withRuntime { rt in
                let podID = try await rt.runPodSandbox(pod).podSandboxID
                let counter = try await rt.createContainer(
                    container(
                        "counter", ["sh", "-c", "i=0; while true; do i=$((i+1)); echo $i; sleep 0.2; done"], pod: pod,
                        podID: podID)
                ).containerID
                try await rt.startContainer(.with { $0.containerID = counter })
                let quitter = try await rt.createContainer(
                    container("quitter", ["sh", "-c", "sleep 2; exit 5"], pod: pod, podID: podID)
                ).containerID
                try await rt.startContainer(.with { $0.containerID = quitter })
                return (podID, counter, quitter)
            }
            func counted() -> [Int] {
                let log = (try? String(contentsOfFile: logDir + "/counter.log", encoding: .utf8)) ?? ""
                return log.split(separator: "\n").compactMap { Int($0.split(separator: " ").last ?? "") }
            }
            await daemon.stop()
            let beforeRestart = counted().count
            // sleep: the quitter exits and the counter counts while no daemon listens
            try await Task.sleep(for: .seconds(3))
            try await daemon.start()
            try await daemon.withRuntime { rt in
                #expect(
                    try await rt.containerStatus(.with { $0.containerID = counter }).status.state == .containerRunning)
                let quit = try await waitUntilExited(rt, quitter)
                #expect(quit.exitCode == 5, "the exit seen while the daemon was down arrives after the restart")
                #expect(try await exec(rt, counter, ["true"]).2 == 0)
                // Under emulation and load the counter ticks slower than 5/s: wait for output written while
                // the daemon was down and after it came back, then check that nothing is missing.
                var numbers = counted()
                for _ in 0..<300 where numbers.count < beforeRestart + 15 {
                    // sleep: a poll pause; the loop checks the condition
                    try await Task.sleep(for: .milliseconds(100))
                    numbers = counted()
                }
                #expect(
                    numbers.count >= beforeRestart + 15 && numbers == Array(1...numbers.count),
                    "no output lost across the restart (\(beforeRestart) lines before it): \(numbers)")
                try await rt.removePodSandbox(.with { $0.podSandboxID = podID })
            }
        }
    }

    @Test func containersRunInALibvirtPodToo() async throws {
        try await withDaemon { daemon in
            _ = try await daemon.withImages { img in try await pull(img, Self.busybox) }
            try await daemon.withRuntime { rt in
                var pod = podConfig("ctr-lv-\(UInt32.random(in: 0...UInt32.max))")
                pod.runtimeHandler = "libvirt"
                let podID = try await rt.runPodSandbox(pod).podSandboxID
                var c = container("lv", ["sleep", "1000"], pod: pod, podID: podID)
                c.config.logPath = ""
                let id = try await rt.createContainer(c).containerID
                try await rt.startContainer(.with { $0.containerID = id })
                #expect(try await exec(rt, id, ["sh", "-c", "echo $((6 * 7))"]) == ("42\n", "", 0))
                try await rt.removeContainer(.with { $0.containerID = id })
                try await rt.removePodSandbox(.with { $0.podSandboxID = podID })
            }
        }
    }

    /// Issue 27: `impostor` carries a byte copy of `genuine`'s config (the same image id) and a layer
    /// of its own. Pulled first, it is refused by the diff-id check (naming the layer) and leaves
    /// nothing; the genuine image pulled after it, even by digest, runs its own files. Before the
    /// check, the impostor's tree was "already unpacked" under that id and the genuine image's
    /// container ran the impostor's files.
    @Test func anImpostorWithACopiedConfigCannotPassForTheRealImage() async throws {
        let genuine = try TestImages.entry("genuine"), impostor = try TestImages.entry("impostor")
        let id = try #require(genuine["config"] as? String)
        #expect(impostor["config"] as? String == id, "the attack's premise: the same image id")
        let forged = try #require(impostor["forged_layer"] as? String)
        try await withDaemon { daemon in
            let genuineRef = "127.0.0.1:5000/genuine@" + (genuine["digest"] as? String ?? "")
            try await daemon.withImages { img in
                let refused = await #expect(throws: RPCError.self) { try await pull(img, "127.0.0.1:5000/impostor") }
                #expect(refused?.code == .dataLoss, "\(refused?.message ?? "")")
                #expect(refused?.message.contains(forged) == true, "names the layer: \(refused?.message ?? "")")
                #expect(refused?.message.contains("diff_ids") == true, "\(refused?.message ?? "")")
                #expect(try await img.listImages(Runtime_V1_ListImagesRequest()).images.isEmpty)
                let rootfs = daemon.stateRoot + "/images/rootfs"
                #expect(try FileManager.default.contentsOfDirectory(atPath: rootfs).isEmpty, "nothing left behind")
                #expect(try await pull(img, genuineRef) == id)
                let trees = try FileManager.default.contentsOfDirectory(atPath: rootfs)
                    .filter { !$0.hasSuffix(".erofs") }
                #expect(trees.count == 1 && trees.first != String(id.dropFirst(7)), "keyed by chain id: \(trees)")
            }
            try await daemon.withRuntime { rt in
                let pod = podConfig("impostor-\(UInt32.random(in: 0...UInt32.max))")
                try await withTestPod(rt, pod) { podID in
                    let c = try await run(
                        rt, containerRequest("real", ["sleep", "600"], pod: pod, podID: podID, image: genuineRef))
                    #expect(try await execScript(rt, c, "cat /whoami.txt").out == "genuine\n")
                }
            }
        }
    }

    @Test func badContainerRequestsGetClearErrors() async throws {
        try await withDaemon { daemon in
            _ = try await daemon.withImages { img in try await pull(img, Self.busybox) }
            try await daemon.withRuntime { rt in
                let pod = podConfig("ctr-bad-\(UInt32.random(in: 0...UInt32.max))")
                defer { try? FileManager.default.removeItem(atPath: pod.config.logDirectory) }
                let podID = try await rt.runPodSandbox(pod).podSandboxID
                func code(_ r: Runtime_V1_CreateContainerRequest) async -> (RPCError.Code?, String) {
                    do {
                        _ = try await rt.createContainer(r)
                        return (nil, "")
                    } catch let e as RPCError {
                        return (e.code, e.message)
                    } catch {
                        return (nil, "\(error)")
                    }
                }
                var r = container("c", ["true"], pod: pod, podID: "0123456789abcdef")
                #expect(await code(r).0 == .notFound)
                r = container("c", ["true"], pod: pod, podID: podID)
                r.config.image.image = "127.0.0.1:5000/never-pulled:1"
                let missing = await code(r)
                #expect(missing.0 == .notFound && missing.1.contains("never-pulled"), "\(missing)")
                r = container("c", ["true"], pod: pod, podID: podID)
                r.config.mounts = [
                    .with {
                        $0.hostPath = "/nonexistent/cocoon-src"
                        $0.containerPath = "/x"
                    }
                ]
                let mount = await code(r)
                #expect(mount.0 == .notFound && mount.1.contains("/nonexistent/cocoon-src"), "\(mount)")
                r.config.mounts = [
                    .with {
                        $0.hostPath = daemon.stateRoot
                        $0.containerPath = "/x"
                    }
                ]
                #expect(await code(r).0 == .invalidArgument)
                r = container("c", ["true"], pod: pod, podID: podID)
                r.config.linux.securityContext.capabilities.addCapabilities = ["CAP_FLY"]
                #expect(await code(r).0 == .invalidArgument)
                r = container("c", ["no-such-binary"], pod: pod, podID: podID)
                let created = try await rt.createContainer(r).containerID
                await #expect(throws: RPCError.self) { try await rt.startContainer(.with { $0.containerID = created }) }
                #expect(try await rt.containerStatus(.with { $0.containerID = created }).status.reason == "StartError")
                await #expect(throws: RPCError.self) {
                    _ = try await rt.containerStatus(.with { $0.containerID = "nope" })
                }
                try await rt.removePodSandbox(.with { $0.podSandboxID = podID })
            }
        }
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
}
