import BootContract
import Foundation
import Models
import Persistence
import Spawn

/// The `native` backend: a pod without a VM, run on the host the way containerd + runc run it. Its
/// "VM" is the pod's own agent (`cocoon-agent host`, the same program and ContainerCore as a VM's
/// agent) started in the pod's network namespace (none: the host's), holding the pod's IPC and UTS
/// namespaces and a mount namespace of its own, in a cgroup under the pod's (`<pod>/agent`, beside
/// the containers' cgroups). It outlives cocoond, as a VM does, and is reached over a Unix socket
/// that only root may use, with the pod's token. Image "disks" are the image's unpacked trees,
/// linked for the agent by serial; volumes are the pod's shared directory, bound directly.
public struct NativeSandboxer: Hypervisor {
    public let backend = Backend.native
    public let opensTapByName = false
    public let sharesDirectories = true
    public let makesTemplates = false
    /// The agent program this daemon starts for each native pod.
    public let agentBinary: String

    public init(agentBinary: String = NativeSandboxer.defaultAgentBinary) {
        self.agentBinary = agentBinary
    }

    /// `cocoon-agent` beside the running daemon's executable.
    public static var defaultAgentBinary: String {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? ""
        return ((exe as NSString).deletingLastPathComponent as NSString).appendingPathComponent("cocoon-agent")
    }

    /// The pod's cgroup (relative to the hierarchy's root) and the agent's leaf below it.
    static func cgroups(_ spec: VMSpec) -> (pod: String, agent: String) {
        let pod = VMCgroup.path(forVM: spec.vmName, parent: spec.cgroupParent)
        return (pod, pod + "/agent")
    }

    public func boot(_ spec: VMSpec) async throws(HypervisorError) -> VMHandle {
        guard FileManager.default.isExecutableFile(atPath: agentBinary) else {
            throw .invalidSpec("the native pod agent \(agentBinary) is missing (swift build builds cocoon-agent)")
        }
        let podDir = spec.stateDir + "/pod"
        let consoleLog = spec.stateDir + "/console.log"
        let socket = spec.runDir + "/agent.sock"
        do {
            try PassableDirectory.ensure((spec.runDir as NSString).deletingLastPathComponent)
            try FileManager.default.createDirectory(
                atPath: spec.runDir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            try FileManager.default.createDirectory(atPath: podDir + "/images", withIntermediateDirectories: true)
        } catch {
            throw .bootFailed("cannot create the native pod's directories: \(error)")
        }
        let cgroups = Self.cgroups(spec)
        let procs = try VMCgroup.create(cgroups.agent, nil)
        let output = open(consoleLog, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
        guard output >= 0 else {
            await Self.endTree(cgroups.pod)
            throw .bootFailed("cannot open \(consoleLog): \(String(cString: strerror(errno)))")
        }
        defer { close(output) }
        var argv = [
            agentBinary, "host", "--socket", socket, "--token-file", spec.agentTokenFile ?? "/nonexistent",
            "--cgroup-root", VMCgroup.mountRoot + cgroups.pod, "--pod-dir", podDir, "--name", spec.vmName,
        ]
        if let shared = spec.sharedDir { argv += ["--shared-dir", shared] }
        if let netns = spec.netns { argv += ["--netns", netns] }
        if spec.hostPID { argv.append("--host-pid") }
        if spec.hostIPC { argv.append("--host-ipc") }
        let launched = HostProcess.nowNs()
        let pid: Int32
        do {
            var launch = VMProcess.Launch(
                uid: 0, gid: 0, keep: [], output: output, cgroupProcs: procs, keepPrivileges: true)
            launch.mountNamespace = spec.sharedMountNamespace  // its own is made from the pod's
            pid = try VMProcess.start(argv, launch)
        } catch {
            await Self.endTree(cgroups.pod)
            throw .bootFailed("cannot start \(agentBinary): \(error)")
        }
        var handle = VMHandle(
            backend: backend, name: spec.vmName, pid: pid, accel: .auto, agent: .serial(path: socket),
            controlSocket: nil, consoleLog: consoleLog, runDir: spec.runDir, launchedAtNs: launched)
        handle.startTicks = HostProcess.startTicks(pid)
        handle.cgroup = cgroups.pod
        handle.sharedDir = spec.sharedDir
        handle.diskDir = podDir + "/images"
        return handle
    }

    /// Waits for the agent to end (after Shutdown), then ends everything in the pod's cgroup (the
    /// agent and every container process) and removes the cgroups and the run directory.
    public func stop(_ vm: VMHandle, timeout: Duration) async {
        _ = await wait(vm, timeout: timeout)
        await kill(vm)
        // try?: sockets of an ended pod; a leftover is harmless and reused by nobody
        try? FileManager.default.removeItem(atPath: vm.runDir)
    }

    public func kill(_ vm: VMHandle) async {
        if vm.isAlive { Glibc.kill(vm.pid, SIGKILL) }
        if let cgroup = vm.cgroup { await Self.endTree(cgroup) }
        _ = await HostProcess.waitGone(pid: vm.pid, marker: vm.name, startTicks: vm.startTicks, timeout: .seconds(5))
    }

    /// Kills everything in the pod's cgroup tree (v2: `cgroup.kill`; v1: each member of each
    /// cgroup, again until none is left), then removes its cgroups, deepest first, in every hierarchy.
    static func endTree(_ path: String) async {
        let roots =
            VMCgroup.unified
            ? [VMCgroup.mountRoot + path]
            : ((try? FileManager.default.contentsOfDirectory(atPath: VMCgroup.mountRoot)) ?? []).map {
                VMCgroup.mountRoot + "/" + $0 + path
            }.filter { FileManager.default.fileExists(atPath: $0 + "/cgroup.procs") }
        let dirs = roots.flatMap { cgroupTree($0) }
        if VMCgroup.unified {
            await VMCgroup.killAll(path)
        } else {
            for _ in 0..<VMCgroup.tries {
                let pids = dirs.flatMap { VMCgroup.pids(inDirectory: $0) }
                if pids.isEmpty { break }
                for pid in pids { Glibc.kill(pid, SIGKILL) }
                // try?: cancellation ends the wait early; the processes were signalled
                try? await Task.sleep(for: VMCgroup.retry)
            }
        }
        let deepestFirst = dirs.sorted { $0.split(separator: "/").count > $1.split(separator: "/").count }
        await VMCgroup.removeDirectories(deepestFirst, clock: ContinuousClock())
    }

    /// A cgroup directory and every cgroup below it.
    static func cgroupTree(_ root: String) -> [String] {
        guard FileManager.default.fileExists(atPath: root) else { return [] }
        var dirs = [root]
        if let walker = FileManager.default.enumerator(atPath: root) {
            while let entry = walker.nextObject() as? String {
                var isDir: ObjCBool = false
                if FileManager.default.fileExists(atPath: root + "/" + entry, isDirectory: &isDir), isDir.boolValue {
                    dirs.append(root + "/" + entry)
                }
            }
        }
        return dirs
    }

    public func noteKVMBoot(_ spec: VMSpec, failure: String?) async {}

    public func joinPodCgroup(_ vm: VMHandle, parent: String, vcpus: Int, memoryMiB: Int) async throws(HypervisorError)
        -> VMHandle
    {
        throw .unavailable("native pods are never pooled")
    }

    public func wait(_ vm: VMHandle, timeout: Duration) async -> Bool {
        await HostProcess.waitGone(pid: vm.pid, marker: vm.name, startTicks: vm.startTicks, timeout: timeout)
    }

    public func describe(_ vm: VMHandle) async -> VMStatus {
        vm.isAlive ? .running(pid: vm.pid) : .exited
    }

    /// Links the image's unpacked tree (the block image's path without `.erofs`) for the agent,
    /// which uses it as the read-only lower layer of its containers' root filesystems.
    public func attachDisk(_ vm: VMHandle, path: String, serial: String, slot: Int) async throws(HypervisorError) {
        guard let dir = vm.diskDir else { throw .deviceFailed("\(vm.name) has no image directory") }
        let tree = path.hasSuffix(".erofs") ? String(path.dropLast(".erofs".count)) : path
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: tree, isDirectory: &isDir), isDir.boolValue else {
            throw .deviceFailed("image tree \(tree) for \(vm.name) is missing")
        }
        let link = dir + "/" + serial
        unlink(link)
        guard symlink(tree, link) == 0 else {
            throw .deviceFailed("link \(tree) for \(vm.name): \(String(cString: strerror(errno)))")
        }
    }

    public func detachDisk(_ vm: VMHandle, serial: String, slot: Int) async throws(HypervisorError) {
        guard let dir = vm.diskDir else { return }
        unlink(dir + "/" + serial)
    }

    public func saveTemplate(_ vm: VMHandle, stateFD: Int32) async throws(HypervisorError) {
        throw .unavailable("native pods have no template")
    }

    /// An agent whose handle was never saved is found by its `--name` argument.
    public func reapOrphan(vmName: String, cgroupParent: String?) async {
        for pid in HostProcess.pids(withArgument: vmName) { Glibc.kill(pid, SIGKILL) }
        await Self.endTree(VMCgroup.path(forVM: vmName, parent: cgroupParent))
    }
}
