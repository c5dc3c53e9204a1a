import CRIAPI
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Testing

/// Pods started from a handler's template (copy-on-write clones of one booted VM) and from its warm
/// pool: real VMs, real migration state, real CNI networks.
@Suite(
    .serialized,
    .enabled(
        if: DaemonHarness.enabled && TestImages.available, "needs the guest image and the test registry (scripts/test)")
)
struct TemplateTests {
    typealias Runtime = Runtime_V1_RuntimeService.Client<HTTP2ClientTransport.Posix>
    static let busybox = "127.0.0.1:5000/busybox:latest"

    /// A template handler whose kernel is `kernel` (default: the guest's).
    static func handler(_ name: String = "tpl", pool: Int, kernel: String? = nil) -> String {
        let guest = DaemonHarness.guestDir ?? "/var/lib/cocoon/guest"
        return """
            [handlers.\(name)]
            backend = "qemu"
            kernel = "\(kernel ?? guest + "/vmlinux")"
            initrd = "\(guest)/initrd.cpio"
            agent_image = "\(guest)/agent.img"
            start = "template"
            pool_size = \(pool)
            """
    }

    /// The handler's template status from `Status` (verbose).
    static func templateStatus(_ rt: Runtime, _ handler: String = "tpl") async throws -> [String: Any] {
        let status = try await rt.status(.with { $0.verbose = true })
        guard let text = status.info["templates"],
            let list = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [[String: Any]],
            let entry = list.first(where: { $0["handler"] as? String == handler })
        else { throw HarnessError("no template status for \(handler): \(status.info)") }
        return entry
    }

    /// Waits until the template is ready and the pool holds `pool` VMs; the template's key.
    static func waitReady(_ rt: Runtime, pool: Int, within: Duration = .seconds(240)) async throws -> String {
        let clock = ContinuousClock()
        let start = clock.now
        while clock.now - start < within {
            let t = try await templateStatus(rt)
            if t["ready"] as? Bool == true, (t["pool_ready"] as? Int ?? 0) >= pool, let key = t["key"] as? String {
                return key
            }
            // sleep: a poll pause; the loop checks the condition
            try await Task.sleep(for: .milliseconds(250))
        }
        throw HarnessError("template not ready with \(pool) pool VMs within \(within): \(try await templateStatus(rt))")
    }

    /// How the pod's VM started (`start` in inspectp's info) and why it booted cold.
    static func start(_ rt: Runtime, _ podID: String) async throws -> (mode: String, reason: String?) {
        let vm = try await vmInfo(rt, podID)
        guard let mode = vm["start"] as? String else { throw HarnessError("no start mode in \(vm)") }
        return (mode, vm["cold_reason"] as? String)
    }

    static func pod(_ name: String) -> Runtime_V1_RunPodSandboxRequest {
        var r = podConfig(name + "-\(UInt32.random(in: 0...UInt32.max))")
        r.runtimeHandler = "tpl"
        return r
    }

    /// What a pod's guest says of itself: 32 random bytes, its boot id, its clock, its address.
    static func identity(_ rt: Runtime, _ pod: Runtime_V1_RunPodSandboxRequest, _ podID: String) async throws
        -> [String: String]
    {
        let id = try await runContainer(rt, containerRequest("who", PodNetworkTests.web, pod: pod, podID: podID))
        let r = try await execScript(
            rt, id,
            "echo rand=$(head -c 32 /dev/urandom | busybox md5sum | cut -c1-32); "
                + "echo boot=$(cat /proc/sys/kernel/random/boot_id); echo now=$(date +%s); "
                + "echo ip=$(ip -4 -o addr show eth0 | awk '{print $4}'); echo host=$(hostname)")
        var out: [String: String] = [:]
        for line in r.out.split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1).map(String.init)
            if parts.count == 2 { out[parts[0]] = parts[1] }
        }
        return out
    }

    @Test func podsFromTheTemplateAndThePoolAreEachTheirOwn() async throws {
        try await withDaemon(extraConfig: Self.handler(pool: 1)) { daemon in
            _ = try await daemon.withImages { img in try await pull(img, Self.busybox) }
            try await daemon.withRuntime { rt in
                _ = try await Self.waitReady(rt, pool: 1)
                // The template's RAM memfd is reported as the host holds it (shmem, in no process's
                // RSS): some of its RAM, never more than all of it.
                let status = try await Self.templateStatus(rt)
                let resident = status["ram_resident_mib"] as? Int ?? -1
                let size = status["memory_mib"] as? Int ?? 0
                #expect(resident > 0 && resident <= size, "\(status)")
                var seen: [[String: String]] = []
                var modes: [String] = []
                // The pool's VM was booted before its pod was known: it moves under the pod's cgroup.
                let parent = "/cocotest-pool-\(UInt32.random(in: 0...UInt32.max))"
                defer { VMCgroupFiles.remove(parent) }
                var pooledCgroup = ""
                for name in ["first", "second"] {
                    var pod = Self.pod(name)
                    if name == "first" { pod.config.linux.cgroupParent = parent }
                    try await withTestPod(rt, pod) { podID in
                        modes.append(try await Self.start(rt, podID).mode)
                        if name == "first" {
                            let vm = try await vmInfo(rt, podID)
                            pooledCgroup = try #require(vm["vmm_cgroup"] as? String)
                            #expect(pooledCgroup.hasPrefix(parent + "/"), "\(pooledCgroup)")
                            let pid = try #require(vm["pid"] as? Int)
                            let joined = try String(contentsOfFile: "/proc/\(pid)/cgroup", encoding: .utf8)
                            #expect(joined.contains(pooledCgroup), "\(joined)")
                        }
                        var who = try await Self.identity(rt, pod, podID)
                        who["pod"] = podID
                        seen.append(who)
                        // The pod's network is its own: the host reaches its web server at its address.
                        let ip = String((who["ip"] ?? "").split(separator: "/").first ?? "")
                        #expect(!ip.isEmpty, "\(who)")
                        let page = try await PodNetworkTests().fetch("http://\(ip)/")
                        #expect(page.hasPrefix(name), "the host reached \(ip): \(page)")
                    }
                }
                print("template pods: \(modes) \(seen)")
                #expect(!pooledCgroup.isEmpty && !VMCgroupFiles.exists(pooledCgroup), "\(pooledCgroup) left behind")
                // A pod that asks for a VM size of its own boots cold, and says why.
                var sized = Self.pod("sized")
                sized.config.annotations["io.cocoon.vm.memory_mib"] = "384"
                try await withTestPod(rt, sized) { podID in
                    let start = try await Self.start(rt, podID)
                    #expect(start.mode == "cold" && start.reason?.contains("384 MiB") == true, "\(start)")
                }
                // The first pod takes the pool's VM; the second comes from the pool again (refilled)
                // or straight from the template.
                #expect(modes.first == "pool")
                #expect(modes.allSatisfy { $0 == "pool" || $0 == "template" }, "\(modes)")
                #expect(seen.count == 2)
                if seen.count == 2 {
                    #expect(seen[0]["rand"] != nil && seen[0]["rand"] != seen[1]["rand"], "\(seen)")
                    #expect(seen[0]["boot"] != nil && seen[0]["boot"] != seen[1]["boot"], "\(seen)")
                    #expect(seen[0]["ip"] != seen[1]["ip"])
                    for who in seen {
                        let guestNow = Double(who["now"] ?? "") ?? 0
                        #expect(abs(guestNow - Date().timeIntervalSince1970) < 120, "the clone's clock: \(who)")
                        #expect(who["host"]?.hasPrefix("first") == true || who["host"]?.hasPrefix("second") == true)
                    }
                }
            }
            // The pool's waiting VM is ended with the daemon; nothing else was left.
            await daemon.stop()
            #expect(daemon.leftoverFiles().isEmpty, "\(daemon.leftoverFiles())")
        }
    }

    @Test func aTemplateIsRebuiltWhenItsKernelChangesAndWhenItsFileIsDamaged() async throws {
        let root = "/tmp/cocoon-tpl-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }  // test scratch space
        let guest = DaemonHarness.guestDir ?? "/var/lib/cocoon/guest"
        let kernel = root + "/vmlinux"
        try FileManager.default.copyItem(atPath: guest + "/vmlinux", toPath: kernel)
        try await withDaemon(extraConfig: Self.handler(pool: 0, kernel: kernel)) { daemon in
            _ = try await daemon.withImages { img in try await pull(img, Self.busybox) }
            let first = try await daemon.withRuntime { rt in try await Self.waitReady(rt, pool: 0) }
            let kept = try FileManager.default.contentsOfDirectory(atPath: daemon.stateRoot + "/templates/tpl")
            #expect(Set(kept) == ["ram", "state", "template.json", "console.log"], "\(kept)")

            // The kernel file changes: the next pod boots cold, and the template is built again.
            try FileManager.default.removeItem(atPath: kernel)
            try FileManager.default.copyItem(atPath: guest + "/vmlinux", toPath: kernel)
            try await daemon.withRuntime { rt in
                try await withTestPod(rt, Self.pod("after-kernel")) { podID in
                    let start = try await Self.start(rt, podID)
                    #expect(start.mode == "cold", "\(start)")
                }
                let second = try await Self.waitReady(rt, pool: 0)
                #expect(second != first)
                try await withTestPod(rt, Self.pod("rebuilt")) { podID in
                    let start = try await Self.start(rt, podID)
                    #expect(start.mode == "template", "\(start)")
                }
            }

            // A damaged RAM file is found at load: removed, the pod boots cold, the template is rebuilt.
            await daemon.stop()
            let ram = daemon.stateRoot + "/templates/tpl/ram"
            let fd = open(ram, O_WRONLY)
            #expect(fd >= 0)
            var garbage = [UInt8](repeating: 0xA5, count: 4096)
            #expect(pwrite(fd, &garbage, garbage.count, 1 << 20) == 4096)
            close(fd)
            try await daemon.start()
            try await daemon.withRuntime { rt in
                try await withTestPod(rt, Self.pod("damaged")) { podID in
                    let start = try await Self.start(rt, podID)
                    #expect(start.mode == "cold", "\(start)")
                }
                _ = try await Self.waitReady(rt, pool: 0)
                try await withTestPod(rt, Self.pod("repaired")) { podID in
                    let start = try await Self.start(rt, podID)
                    #expect(start.mode == "template", "\(start)")
                }
            }
            #expect(daemon.daemonLog().contains("template is damaged"), "no log line for the damaged template")

            // `cocoonctl template rebuild` builds it again now; a cold or unknown handler is refused.
            let manifest = daemon.stateRoot + "/templates/tpl/template.json"
            let before = try FileManager.default.attributesOfItem(atPath: manifest)[.modificationDate] as? Date
            func rebuild(_ handler: String) async throws -> CommandResult {
                try await runCommand(
                    [
                        CocoonCtl(socket: daemon.socket).binary, "template", "rebuild", "-r", "unix://" + daemon.socket,
                        "--handler", handler,
                    ], timeout: .seconds(240))
            }
            let rebuilt = try await rebuild("tpl")
            #expect(rebuilt.code == 0 && rebuilt.out.contains("Rebuilt tpl"), "\(rebuilt.out) \(rebuilt.stderr)")
            let after = try FileManager.default.attributesOfItem(atPath: manifest)[.modificationDate] as? Date
            #expect(before != nil && after != nil && before != after)
            let cold = try await rebuild("cocoon")
            #expect(cold.code != 0 && cold.stderr.contains("cold"), "\(cold.stderr)")
            let unknown = try await rebuild("nope")
            #expect(unknown.code != 0 && unknown.stderr.contains("not configured"), "\(unknown.stderr)")
            try await daemon.withRuntime { rt in
                try await withTestPod(rt, Self.pod("after-rebuild")) { podID in
                    let start = try await Self.start(rt, podID)
                    #expect(start.mode == "template", "\(start)")
                }
            }
        }
    }

    @Test func eightConcurrentPodsWithAPoolOfTwoAllStartAndLeaveNothing() async throws {
        try await withDaemon(extraConfig: Self.handler(pool: 2)) { daemon in
            try await daemon.withRuntime { rt in
                _ = try await Self.waitReady(rt, pool: 2)
                let pods = (0..<8).map { Self.pod("burst\($0)") }
                defer {
                    // try?: test scratch space
                    for pod in pods { try? FileManager.default.removeItem(atPath: pod.config.logDirectory) }
                }
                let ids = try await withThrowingTaskGroup(of: String.self) { group in
                    for pod in pods {
                        group.addTask {
                            try FileManager.default.createDirectory(
                                atPath: pod.config.logDirectory, withIntermediateDirectories: true)
                            return try await rt.runPodSandbox(pod).podSandboxID
                        }
                    }
                    var ids: [String] = []
                    for try await id in group {
                        ids.append(id)
                        #expect(try await Self.templateStatus(rt)["pool_ready"] as? Int ?? 0 <= 2)
                    }
                    return ids
                }
                #expect(ids.count == 8)
                var modes: [String: Int] = [:]
                for id in ids { modes[try await Self.start(rt, id).mode, default: 0] += 1 }
                print("8 concurrent pods with a pool of 2: \(modes)")
                #expect(modes["pool", default: 0] >= 2, "\(modes)")
                for id in ids {
                    try await rt.stopPodSandbox(.with { $0.podSandboxID = id })
                    try await rt.removePodSandbox(.with { $0.podSandboxID = id })
                }
                _ = try await Self.waitReady(rt, pool: 2)
                #expect(try await Self.templateStatus(rt)["pool_ready"] as? Int == 2)
            }
            // A daemon that crashes leaves its pool's VMs running; the next one ends them and fills
            // a pool of its own.
            let before = Set(HostProcessList.withArgument("process=cocoon-pool"))
            #expect(before.count == 2)
            await daemon.crash()
            try await daemon.start()
            try await daemon.withRuntime { rt in _ = try await Self.waitReady(rt, pool: 2) }
            let after = Set(HostProcessList.withArgument("process=cocoon-pool"))
            #expect(after.count == 2 && after.isDisjoint(with: before), "before \(before), after \(after)")
            // A stopped daemon ends its pool's VMs.
            await daemon.stop()
            #expect(daemon.leftoverFiles().isEmpty, "\(daemon.leftoverFiles())")
            let pool = (try? FileManager.default.contentsOfDirectory(atPath: daemon.stateRoot + "/pool")) ?? []
            #expect(pool.isEmpty, "\(pool)")
            #expect(HostProcessList.withArgument("process=cocoon-pool").isEmpty)
        }
    }
}
