import CRIAPI
import ContainerCore
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Hypervisor
import Spawn
import Synchronization
import SystemFiles

/// Starts a real cocoond (the built binary) on a private socket, state root and run dir, with one
/// handler per backend pointing at the guest image in $COCOON_GUEST_DIR. Tests talk real CRI to it.
final class DaemonHarness: @unchecked Sendable {
    static var guestDir: String? { ProcessInfo.processInfo.environment["COCOON_GUEST_DIR"] }
    /// VM tests run when the guest image exists (scripts/test builds it and sets COCOON_GUEST_DIR).
    static var enabled: Bool {
        guard let dir = guestDir else { return false }
        return FileManager.default.fileExists(atPath: dir + "/initrd.cpio")
    }

    let root: String
    var socket: String { root + "/run/cocoon.sock" }
    var stateRoot: String { root + "/state" }
    var runDir: String { root + "/run" }
    private var process: Process?
    /// This daemon's pod network: a bridge and a /24 of its own (the real CNI plugins from
    /// containernetworking-plugins), so daemons of concurrent tests never share addresses.
    let network: TestNetwork
    var cniConfDir: String { root + "/net.d" }

    init(extraConfig: String = "") throws {
        root = "/tmp/cocoon-it-" + String(UUID().uuidString.prefix(8))
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        network = TestNetwork.next(root: root)
        try FileManager.default.createDirectory(atPath: cniConfDir, withIntermediateDirectories: true)
        try network.conflist().write(toFile: cniConfDir + "/10-cocoon-it.conflist", atomically: true, encoding: .utf8)
        let guest = Self.guestDir ?? "/var/lib/cocoon/guest"
        let config = """
            state_root = "\(stateRoot)"
            run_dir = "\(runDir)"
            log_level = "debug"
            [cni]
            conf_dir = "\(cniConfDir)"
            [handlers.cocoon]
            backend = "qemu"
            kernel = "\(guest)/vmlinux"
            initrd = "\(guest)/initrd.cpio"
            \(Self.startMode.config)
            [handlers.libvirt]
            backend = "libvirt"
            trusted_guests = true
            kernel = "\(guest)/vmlinux"
            initrd = "\(guest)/initrd.cpio"
            \(extraConfig)
            """
        try config.write(toFile: root + "/config.toml", atomically: true, encoding: .utf8)
    }

    /// How the default handler's pods start (`COCOON_TEST_START`: cold, template or pool), so that
    /// the same suites run against pods booted, cloned from a template and taken from a warm pool.
    enum StartMode: String {
        case cold, template, pool
        var config: String {
            switch self {
            case .cold: ""
            case .template: "start = \"template\"\npool_size = 0"
            case .pool: "start = \"template\"\npool_size = 1"
            }
        }
    }
    static var startMode: StartMode {
        StartMode(rawValue: ProcessInfo.processInfo.environment["COCOON_TEST_START"] ?? "") ?? .cold
    }

    /// Waits until the default handler's template (and pool) are ready: the suites' pods then
    /// start the way `COCOON_TEST_START` asks, not cold because they came first.
    private func waitForTemplate() async throws {
        guard Self.startMode != .cold else { return }
        let want = Self.startMode == .pool ? 1 : 0
        for _ in 0..<1200 {
            let status = try await withRuntime { rt in try await rt.status(.with { $0.verbose = true }) }
            if let text = status.info["templates"],
                let list = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [[String: Any]],
                let t = list.first(where: { $0["handler"] as? String == "cocoon" }), t["ready"] as? Bool == true,
                (t["pool_ready"] as? Int ?? 0) >= want
            {
                return
            }
            // sleep: a poll pause; the loop checks the condition
            try await Task.sleep(for: .milliseconds(250))
        }
        throw HarnessError("the default handler's template was not ready within 5 minutes; log: \(daemonLog())")
    }

    static var binary: String {
        if let dir = ProcessInfo.processInfo.environment["COCOON_BIN_DIR"] { return dir + "/cocoond" }
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        return repo.path + "/.build/debug/cocoond"
    }

    /// Starts cocoond in a session and process group of its own (as a service manager would), so
    /// `crash()` can kill its whole group the way a crashing unit is killed.
    func start() async throws {
        let before = Set(daemonPids())
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/setsid")
        p.arguments = ["--wait", Self.binary, "--config", root + "/config.toml"]
        let log =
            FileHandle(forWritingAtPath: root + "/daemon.log")
            ?? {
                FileManager.default.createFile(atPath: root + "/daemon.log", contents: nil)
                return FileHandle(forWritingAtPath: root + "/daemon.log")!
            }()
        log.seekToEndOfFile()
        p.standardOutput = log
        p.standardError = log
        try p.run()
        process = p
        // Ready once this start's daemon runs and the socket accepts (the file exists before listen()).
        for _ in 0..<400 {
            if pid == nil { pid = daemonPids().first { !before.contains($0) } }
            if pid != nil, UnixSocketAddress.accepts(socket) {
                try await waitForTemplate()
                return
            }
            if !p.isRunning { break }
            // sleep: a poll pause; the loop checks the condition
            try await Task.sleep(for: .milliseconds(25))
        }
        throw HarnessError("cocoond did not listen on \(socket); log: \(daemonLog())")
    }

    /// SIGTERM, as an operator restarting the daemon would; VMs keep running. Waits until that daemon
    /// is gone (SIGKILL after 30 s), so a restart never meets the old one still shutting down.
    func stop() async {
        guard let p = process else { return }
        if let pid {
            kill(pid, SIGTERM)
            // sleep: a poll pause; the loop checks the condition
            for _ in 0..<1200 where processAlive(pid) { try? await Task.sleep(for: .milliseconds(25)) }
            if processAlive(pid) { kill(pid, SIGKILL) }
        } else {
            p.terminate()
        }
        // sleep: a poll pause; the loop checks the condition
        for _ in 0..<200 where p.isRunning { try? await Task.sleep(for: .milliseconds(25)) }
        process = nil
        pid = nil
    }

    /// The daemon started by `start` (setsid may have forked it off).
    private(set) var pid: Int32?

    /// Every live cocoond process using this harness's config.
    func daemonPids() -> [Int32] {
        let marker = root + "/config.toml"
        return ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { entry -> Int32? in
            guard let pid = Int32(entry), let cmdline = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline")
            else { return nil }
            let args = cmdline.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            return args.first?.hasSuffix("/cocoond") == true && args.contains(marker) && processAlive(pid) ? pid : nil
        }
    }

    /// SIGKILL to the daemon's whole process group (`kill -9 -PGID`): no graceful anything. Pod VMs
    /// are in sessions of their own and survive.
    func crash() async {
        guard let p = process, let pid else { return }
        kill(-getpgid(pid), SIGKILL)
        // sleep: a poll pause; the loop checks the condition
        for _ in 0..<200 where p.isRunning || processAlive(pid) { try? await Task.sleep(for: .milliseconds(25)) }
        process = nil
        self.pid = nil
    }

    func daemonLog() -> String { (try? String(contentsOfFile: root + "/daemon.log", encoding: .utf8)) ?? "" }

    func withRuntime<R: Sendable>(
        _ body: (Runtime_V1_RuntimeService.Client<HTTP2ClientTransport.Posix>) async throws -> R
    ) async throws -> R {
        let transport = try HTTP2ClientTransport.Posix(
            target: .unixDomainSocket(path: socket), transportSecurity: .plaintext)
        return try await withGRPCClient(transport: transport) { client in
            try await body(Runtime_V1_RuntimeService.Client(wrapping: client))
        }
    }

    func withImages<R: Sendable>(_ body: (Runtime_V1_ImageService.Client<HTTP2ClientTransport.Posix>) async throws -> R)
        async throws -> R
    {
        let transport = try HTTP2ClientTransport.Posix(
            target: .unixDomainSocket(path: socket), transportSecurity: .plaintext)
        return try await withGRPCClient(transport: transport) { client in
            try await body(Runtime_V1_ImageService.Client(wrapping: client))
        }
    }

    /// Stops the daemon and kills the VMs of any pod a failed test left behind (pod VMs outlive the
    /// daemon by design), then deletes the test's directory.
    func cleanup() async {
        // Late agent calls are rescued, not failed: what their VMs were doing is shown all the same.
        for line in daemonLog().split(separator: "\n") where line.contains("agent call is late") {
            print("late agent call: \(line)")
        }
        if Self.startMode != .cold {
            // How this test's pods really started (the daemon logs each one's start mode).
            let log = daemonLog()
            let counts = ["cold", "template", "pool"].map { mode in
                "\(mode) \(log.components(separatedBy: "start=\(mode) ").count - 1)"
            }
            print("pods started with COCOON_TEST_START=\(Self.startMode.rawValue): \(counts.joined(separator: ", "))")
        }
        // Pods a failed test left: removed through the daemon while it runs, so that CNI DEL frees
        // what the plugins hold outside this test's directory (portmap's iptables rules).
        if pid != nil {
            // try?: a daemon that cannot answer leaves the killing below to do the rest
            try? await withRuntime { rt in
                for pod in try await rt.listPodSandbox(.init()).items {
                    _ = try? await rt.removePodSandbox(.with { $0.podSandboxID = pod.id })
                }
            }
        }
        await stop()
        // Pods' VMs, and pool VMs a crashed daemon left.
        let names = Set(
            ((try? FileManager.default.contentsOfDirectory(atPath: stateRoot + "/sandboxes")) ?? []).map {
                "cocoon-" + $0.prefix(12)
            }
                + ((try? FileManager.default.contentsOfDirectory(atPath: stateRoot + "/pool")) ?? []).map {
                    "cocoon-" + $0.prefix(12)
                })
        var killed: [Int32] = []
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int32(entry), let comm = try? String(contentsOfFile: "/proc/\(entry)/comm", encoding: .utf8)
            else { continue }
            let name = comm.trimmingCharacters(in: .whitespacesAndNewlines)
            if names.contains(where: { $0.hasPrefix(name) && name.count >= 12 }) {
                kill(pid, SIGKILL)
                killed.append(pid)
            }
        }
        // A killed VM leaves its cgroup only once it is gone, and a dying QEMU frees its guest's RAM
        // first: under the CI batch that took longer than `VMCgroup.remove`'s own second (a pool
        // VM's cgroup was once left behind).
        for _ in 0..<500 where killed.contains(where: processAlive) {
            // sleep: a poll pause; the loop checks the condition
            try? await Task.sleep(for: .milliseconds(20))
        }
        for name in names { await VMCgroup.remove(VMCgroup.path(forVM: name)) }
        // Namespaces of pods a failed test left, then the test's bridge (CNI DEL leaves bridges).
        for id in (try? FileManager.default.contentsOfDirectory(atPath: stateRoot + "/sandboxes")) ?? [] {
            let ns = "/var/run/netns/cocoon-" + id.prefix(16)
            umount2(ns, Int32(MNT_DETACH))
            unlink(ns)
        }
        network.removeBridge()
        // Volume servers and bind mounts of pods a failed test left: unmounted before the directory
        // is deleted, so the deletion never goes through a bind into a volume's source.
        for pid in HostProcess.pids(withArgument: "source=" + runDir + "/shared") { kill(pid, SIGKILL) }
        for point in MountTable.mountPoints(below: root) { umount2(point, Int32(MNT_DETACH)) }
        try? FileManager.default.removeItem(atPath: root)
    }

    /// Every file left under the daemon's sandbox state and VM run directories (but the warm
    /// pool's VMs, which wait there for the next pod).
    func leftoverFiles() -> [String] {
        var out: [String] = []
        for dir in [stateRoot + "/sandboxes", stateRoot + "/vm-disks", runDir + "/vms"] {
            if let e = FileManager.default.enumerator(atPath: dir) {
                while let f = e.nextObject() as? String {
                    if !f.hasPrefix("pool") { out.append(dir + "/" + f) }
                }
            }
        }
        return out
    }
}

struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// Runs `body` against a fresh daemon and always stops it and deletes its directories afterwards.
func withDaemon(extraConfig: String = "", _ body: (DaemonHarness) async throws -> Void) async throws {
    let daemon = try DaemonHarness(extraConfig: extraConfig)
    do {
        try await daemon.start()
        try await body(daemon)
    } catch {
        daemon.printDiagnostics(error)
        await daemon.cleanup()
        throw error
    }
    await daemon.cleanup()
}

extension DaemonHarness {
    /// What a failed test leaves for its reader before the daemon's directory goes: the end of the
    /// daemon's log and of each VM's console.
    func printDiagnostics(_ error: any Error) {
        var report = "== daemon \(root) after: \(error)\n-- daemon.log (end)\n" + String(daemonLog().suffix(6000))
        let sandboxes = stateRoot + "/sandboxes"
        // try?: no sandbox directory: no consoles to show
        for id in (try? FileManager.default.contentsOfDirectory(atPath: sandboxes)) ?? [] {
            let console = (try? String(contentsOfFile: "\(sandboxes)/\(id)/console.log", encoding: .utf8)) ?? ""
            report += "\n-- console of \(id.prefix(12)) (end)\n" + String(console.suffix(6000))
            // Where its QEMU's threads are (a VM that stopped running shows here, not on its console).
            for pid in HostProcess.pids(withArgument: "process=cocoon-" + id.prefix(12)) {
                // Its unix sockets with their queues: bytes the host sent that QEMU has not read yet.
                // try?: a diagnostic; what cannot be read is left out (here and below)
                let sockets =
                    (try? HostProcess.runBlocking(["/usr/bin/ss", "-xpn"], timeout: .seconds(5)))?.output ?? ""
                report += "\n-- QEMU \(pid) sockets (ss -xpn)\n"
                report += sockets.split(separator: "\n").filter { $0.contains("pid=\(pid),") }.joined(separator: "\n")
                report += "\n-- QEMU \(pid) threads (state, wchan)"
                for task in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? [] {
                    let base = "/proc/\(pid)/task/\(task)"
                    let comm = (try? String(contentsOfFile: base + "/comm", encoding: .utf8)) ?? "?"
                    let stat = (try? String(contentsOfFile: base + "/stat", encoding: .utf8)) ?? ""
                    let state = stat.split(separator: ")").last?.split(separator: " ").first ?? "?"
                    let wchan = (try? String(contentsOfFile: base + "/wchan", encoding: .utf8)) ?? "?"
                    report += "\n   \(task) \(comm.trimmingCharacters(in: .whitespacesAndNewlines)) \(state) \(wchan)"
                }
            }
        }
        print(report)
    }
}

/// One test daemon's CNI network: bridge `ccit<n>` with gateway 10.213.<n>.1/24, host-local leases
/// under the test's directory, portmap for host ports.
struct TestNetwork: Sendable {
    let bridge: String
    let subnetIndex: Int
    let leaseDir: String
    private static let counter = Mutex(0)

    /// A subnet no daemon of this process has had, and none that anything on the host still uses:
    /// a bridge or portmap's NAT rules left by an earlier (killed) run would show in this one's
    /// checks for leftovers.
    static func next(root: String) -> TestNetwork {
        let nat = (try? HostProcess.runBlocking(["/usr/sbin/iptables-save", "-t", "nat"]).output) ?? ""  // try?: none
        var index = 0
        for _ in 0..<250 {
            let n = counter.withLock { value -> Int in
                value += 1
                return value
            }
            index = (Int(getpid()) * 13 + n) % 250 + 1
            let used =
                FileManager.default.fileExists(atPath: "/sys/class/net/ccit\(index)")
                || nat.contains("10.213.\(index).") || nat.contains("\"cocoon-it-\(index)\"")
            if !used { break }
        }
        return TestNetwork(bridge: "ccit\(index)", subnetIndex: index, leaseDir: root + "/ipam")
    }

    var subnet: String { "10.213.\(subnetIndex).0/24" }
    var gateway: String { "10.213.\(subnetIndex).1" }
    var name: String { "cocoon-it-\(subnetIndex)" }

    /// The IPv6 subnet of a dual-stack variant.
    var subnet6: String { "fd42:cc:\(subnetIndex)::/64" }

    func conflist(subnet override: String? = nil, dualStack: Bool = false) -> String {
        let v6 = dualStack ? #",[{"subnet":"\#(subnet6)"}]"# : ""
        let routes6 = dualStack ? #",{"dst":"::/0"}"# : ""
        return """
            {"cniVersion":"1.0.0","name":"\(name)","plugins":[
              {"type":"bridge","bridge":"\(bridge)","isGateway":true,"ipMasq":false,"hairpinMode":true,
               "ipam":{"type":"host-local","dataDir":"\(leaseDir)","ranges":[[{"subnet":"\(override ?? subnet)"}]\(v6)],
                       "routes":[{"dst":"0.0.0.0/0"}\(routes6)]}},
              {"type":"portmap","capabilities":{"portMappings":true}},
              {"type":"loopback"}]}
            """
    }

    /// The lease files host-local holds (one per pod address).
    func leases() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: leaseDir + "/" + name)) ?? []).filter {
            $0.first?.isNumber == true
        }
    }

    func removeBridge() {
        try? shell("ip link del \(bridge) 2>/dev/null || true")  // try?: never created is fine
    }
}

/// A pod config as the kubelet would send it.
func podConfig(_ name: String, labels: [String: String] = [:]) -> Runtime_V1_RunPodSandboxRequest {
    var r = Runtime_V1_RunPodSandboxRequest()
    r.config.metadata.name = name
    r.config.metadata.namespace = "it"
    r.config.metadata.uid = "uid-" + name
    r.config.labels = labels
    r.config.logDirectory = "/tmp/cocoon-it-logs/" + name
    r.config.linux.securityContext.namespaceOptions.pid = .container  // no shareProcessNamespace
    return r
}

/// True while a process with this pid exists and is not a zombie.
func processAlive(_ pid: Int32) -> Bool {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return false }
    guard let close = stat.lastIndex(of: ")") else { return false }
    let state = stat[stat.index(after: close)...].drop(while: { $0 == " " }).first
    return state != "Z" && state != "X"
}

func vmPid(_ status: Runtime_V1_PodSandboxStatusResponse) throws -> Int32 {
    guard let text = status.info["info"],
        let info = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
        let vm = info["vm"] as? [String: Any], let pid = vm["pid"] as? Int
    else { throw HarnessError("no VM pid in verbose info: \(status.info)") }
    return Int32(pid)
}

/// The `vm` object of a pod's verbose status (pid, vmm_cgroup, vmm_uid, console_log, ...).
func vmInfo(_ rt: Runtime_V1_RuntimeService.Client<HTTP2ClientTransport.Posix>, _ podID: String) async throws
    -> [String: Any]
{
    let status = try await rt.podSandboxStatus(
        .with {
            $0.podSandboxID = podID
            $0.verbose = true
        })
    guard let text = status.info["info"],
        let info = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
        let vm = info["vm"] as? [String: Any]
    else { throw HarnessError("no VM in verbose info: \(status.info)") }
    return vm
}

/// A busybox container request as the kubelet sends it: name, command, log path NAME.log, the
/// label app=NAME, and the pod's config.
func containerRequest(
    _ name: String, _ command: [String], pod: Runtime_V1_RunPodSandboxRequest, podID: String,
    image: String = "127.0.0.1:5000/busybox:latest"
) -> Runtime_V1_CreateContainerRequest {
    var r = Runtime_V1_CreateContainerRequest()
    r.podSandboxID = podID
    r.config.metadata.name = name
    r.config.image.image = image
    r.config.command = command
    r.config.logPath = name + ".log"
    r.config.labels = ["app": name]
    r.config.linux.securityContext.namespaceOptions.pid = .container  // the kubelet's default
    r.sandboxConfig = pod.config
    return r
}

/// ExecSync of `sh -c SCRIPT` (60 s): stdout and stderr together, and the exit code.
func execScript(_ rt: Runtime_V1_RuntimeService.Client<HTTP2ClientTransport.Posix>, _ id: String, _ script: String)
    async throws -> (out: String, code: Int32)
{
    let r = try await rt.execSync(
        .with {
            $0.containerID = id
            $0.cmd = ["sh", "-c", script]
            $0.timeout = 60
        })
    return (String(decoding: r.stdout, as: UTF8.self) + String(decoding: r.stderr, as: UTF8.self), r.exitCode)
}

/// Creates and starts a container; its id.
func runContainer(
    _ rt: Runtime_V1_RuntimeService.Client<HTTP2ClientTransport.Posix>, _ request: Runtime_V1_CreateContainerRequest
) async throws -> String {
    let id = try await rt.createContainer(request).containerID
    try await rt.startContainer(.with { $0.containerID = id })
    return id
}

/// Runs a pod (with a fresh log directory) for `body`, then stops and removes it.
func withTestPod(
    _ rt: Runtime_V1_RuntimeService.Client<HTTP2ClientTransport.Posix>, _ pod: Runtime_V1_RunPodSandboxRequest,
    _ body: (String) async throws -> Void
) async throws {
    let logDir = pod.config.logDirectory
    try? FileManager.default.removeItem(atPath: logDir)  // left by an earlier run, if any
    try FileManager.default.createDirectory(atPath: logDir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: logDir) }  // test scratch space
    let podID = try await rt.runPodSandbox(pod).podSandboxID
    try await body(podID)
    try await rt.stopPodSandbox(.with { $0.podSandboxID = podID })
    try await rt.removePodSandbox(.with { $0.podSandboxID = podID })
}
