import BootContract
import Foundation
import Logging
import Models
import Spawn

/// Runs each VM as its own `qemu-system-x86_64` process: microvm machine, KVM when usable and TCG
/// otherwise, serial console to a log file, QMP for control, daemonized so VMs outlive a daemon
/// restart. The agent channel is vsock when the host has vhost-vsock, else a virtio-serial port.
public struct QEMUHypervisor: Hypervisor {
    public let backend = Backend.qemu
    public let sharesDirectories = true
    /// Over virtio-serial only: a vsock device's context id is the template's in every clone.
    public var makesTemplates: Bool { !VsockSupport.available }
    public let opensTapByName = false
    public let qemuBinary: String
    private let logger: Logger

    /// Debian's QEMU (apt: qemu-system-x86).
    public static let defaultBinary = "/usr/bin/qemu-system-x86_64"

    public init(qemuBinary: String = QEMUHypervisor.defaultBinary, logger: Logger = Logger(label: "cocoon.qemu")) {
        self.qemuBinary = qemuBinary
        self.logger = logger
    }

    public func boot(_ spec: VMSpec) async throws(HypervisorError) -> VMHandle {
        try check(spec)
        let user = spec.user ?? VMUser(uid: 0, gid: 0)
        let accel = try await accelerator(for: spec, user: user)
        let launched = HostProcess.nowNs()
        let layout = QEMULayout(spec: spec)
        let endpoint = Self.agentEndpoint(spec, layout: layout)
        let agentSerial: Bool
        if case .serial = endpoint { agentSerial = true } else { agentSerial = false }
        let cgroupPath = VMCgroup.path(forVM: spec.vmName, parent: spec.cgroupParent)
        let procs = try VMCgroup.create(cgroupPath, QEMULimits.cgroup(spec: spec))
        var fsDaemon: Virtiofsd.Started?
        /// Undoes what a failed boot started.
        func abandon() async {
            if let fsDaemon { await Virtiofsd.abandon(fsDaemon.pid) }
            await VMCgroup.remove(cgroupPath)
        }
        let files: QEMUFiles
        do throws(HypervisorError) {
            if let shared = spec.sharedDir {
                fsDaemon = try await Virtiofsd.start(
                    sharedDir: shared, cache: spec.sharedCache, runDir: spec.runDir, cgroupProcs: procs,
                    mountNamespace: spec.sharedMountNamespace)
            }
            defer { if let fd = fsDaemon?.qemuFD { Glibc.close(fd) } }
            files = try QEMUFiles.open(
                spec: spec, layout: layout, user: user, agentSerial: agentSerial, fsSocket: fsDaemon?.qemuFD)
        } catch {
            await abandon()
            throw error
        }
        let pid: Int32
        do throws(HypervisorError) {
            pid = try start(
                spec, layout: layout, accel: accel, endpoint: endpoint, user: user, files: files, procs: procs)
        } catch {
            await abandon()
            throw error
        }
        let started = await waitForQMP(pid: pid, qmpSocket: layout.qmpSocket)
        guard started == .answered else {
            await abandon()
            throw startFailure(spec, layout: layout, accel: accel, alive: started == .timedOut)
        }
        if case .clone(_, let state) = spec.origin {
            do {
                try await QEMUMigration.restore(from: state, qmp: layout.qmpSocket, vm: spec.vmName)
            } catch {
                await HostProcess.killAndReap(pid)
                await abandon()
                throw error
            }
        }
        return makeHandle(
            spec, pid: pid, accel: accel, endpoint: endpoint, layout: layout, user: user, cgroupPath: cgroupPath,
            fsDaemonPid: fsDaemon?.pid, launched: launched)
    }

    /// The agent's channel: vsock when the host has vhost-vsock, else a virtio-serial port on a socket.
    private static func agentEndpoint(_ spec: VMSpec, layout: QEMULayout) -> AgentEndpoint {
        VsockSupport.available
            ? AgentEndpoint.vsock(cid: VsockSupport.cid(for: spec.id), port: BootContract.agentVsockPort)
            : .serial(path: layout.agentSocket)
    }

    /// Refuses a spec this backend cannot boot (no QEMU binary, a template it cannot make) and prepares its files.
    private func check(_ spec: VMSpec) throws(HypervisorError) {
        guard FileManager.default.isExecutableFile(atPath: qemuBinary) else {
            throw .unavailable("\(qemuBinary) not found (apt-get install qemu-system-x86)")
        }
        try spec.prepareFiles()
        if spec.origin != .boot {
            guard makesTemplates else {
                throw .invalidSpec("\(spec.vmName): templates need the virtio-serial agent channel")
            }
            guard spec.sharedDir == nil else {
                throw .invalidSpec("\(spec.vmName): a template or its clone cannot share a directory (virtio-fs)")
            }
        }
    }

    /// The accelerator the VM boots under: under `auto`, TCG when the VM's user cannot reach /dev/kvm.
    private func accelerator(for spec: VMSpec, user: VMUser) async throws(HypervisorError) -> Accel {
        var accel = try await Accelerator.shared.resolve(
            spec.accel, qemu: qemuBinary, kernel: spec.kernel, initrd: spec.initrd)
        if accel == .kvm, user.uid != 0, KVMDevice.groups.isEmpty {
            // QEMU runs as the VM's user: it reaches /dev/kvm only through the device's group.
            let why =
                "/dev/kvm is not read-write for a group other than root (scripts/setup-host makes it root:kvm 0660)"
            guard spec.accel == .auto else { throw .unavailable(why) }
            logger.warning("pod VM boots under TCG", metadata: ["vm": "\(spec.vmName)", "why": "\(why)"])
            accel = .tcg
        }
        return accel
    }

    /// Starts QEMU on the opened files and closes the daemon's copies of them (also when it cannot start).
    private func start(
        _ spec: VMSpec, layout: QEMULayout, accel: Accel, endpoint: AgentEndpoint, user: VMUser, files: QEMUFiles,
        procs: [String]
    ) throws(HypervisorError) -> Int32 {
        let argv =
            [qemuBinary]
            + QEMUArguments.make(
                spec: spec, layout: layout, accel: accel, agent: endpoint, files: files.paths)
        logger.debug("booting VM", metadata: ["vm": "\(spec.vmName)", "argv": "\(argv.joined(separator: " "))"])
        // Out of the host's network and mount namespaces: its tap, sockets and files are descriptors.
        // (Not with vsock: a kernel that scopes vsock by network namespace would hide its CID.)
        var isolate = true
        if case .vsock = endpoint { isolate = false }
        let launch = VMProcess.Launch(
            uid: user.uid, gid: user.gid, groups: accel == .kvm ? KVMDevice.groups : [], keep: files.kept,
            output: files.output, cgroupProcs: procs, fileSizeLimit: QEMULimits.fileSizeBytes, isolate: isolate)
        let pid: Int32
        do {
            pid = try VMProcess.start(argv, launch)
        } catch {
            files.close()
            throw .bootFailed("cannot start \(qemuBinary): \(error)")
        }
        files.close()  // QEMU has its copies; with ours closed, a QEMU that died refuses connections
        return pid
    }

    /// How a starting QEMU's wait for QMP ended.
    private enum QMPStart {
        case answered
        /// QEMU exited before it answered.
        case exited
        /// Still silent after 30 s: killed and reaped.
        case timedOut
    }

    /// Waits until the just-started QEMU answers on QMP, it exits, or 30 s pass (then kills and reaps it).
    private func waitForQMP(pid: Int32, qmpSocket: String) async -> QMPStart {
        // Running once QMP answers (QEMU greets on it after it has built the machine).
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(30)
        while await QMPClient.execute("query-status", socketPath: qmpSocket, timeout: .milliseconds(500)) == nil {
            // Our own child until it is reaped: waitpid tells (its command line may still be ours).
            var status: Int32 = 0
            let alive = waitpid(pid, &status, WNOHANG) == 0
            if !alive || clock.now >= deadline {
                if alive { await HostProcess.killAndReap(pid) }
                return alive ? .timedOut : .exited
            }
            // try?: cancellation ends the wait early; the loop checks the process again
            try? await Task.sleep(for: .milliseconds(10))
        }
        return .answered
    }

    /// The error for a QEMU that did not start (`alive`: it was still running at the deadline), with the
    /// ends of its output and console logs.
    private func startFailure(_ spec: VMSpec, layout: QEMULayout, accel: Accel, alive: Bool) -> HypervisorError {
        let output = (FileManager.default.contents(atPath: layout.outputLog) ?? Data()).suffix(1000)
        let console = (FileManager.default.contents(atPath: layout.consoleLog) ?? Data()).suffix(600)
        let why =
            "\(spec.vmName): qemu \(alive ? "did not start within 30 s" : "exited while starting"): "
            + String(decoding: output, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            + (console.isEmpty ? "" : "; console: \(String(decoding: console, as: UTF8.self))")
        return accel == .kvm && !alive ? .kvmStartFailed(why) : .bootFailed(why)
    }

    /// The handle of a VM whose QEMU runs (`launched`: when its boot began).
    private func makeHandle(
        _ spec: VMSpec, pid: Int32, accel: Accel, endpoint: AgentEndpoint, layout: QEMULayout, user: VMUser,
        cgroupPath: String, fsDaemonPid: Int32?, launched: Int64
    ) -> VMHandle {
        var handle = VMHandle(
            backend: backend, name: spec.vmName, pid: pid, accel: accel, agent: endpoint,
            controlSocket: layout.qmpSocket, consoleLog: layout.consoleLog, runDir: spec.runDir, launchedAtNs: launched)
        handle.uid = user.uid
        handle.startTicks = HostProcess.startTicks(pid)
        handle.seccomp = QEMUArguments.sandbox
        handle.cgroup = cgroupPath
        handle.sharedDir = spec.sharedDir
        handle.fsDaemonPid = fsDaemonPid
        return handle
    }

    public func noteKVMBoot(_ spec: VMSpec, failure: String?) async {
        await Accelerator.shared.note(qemu: qemuBinary, kernel: spec.kernel, initrd: spec.initrd, failure: failure)
    }

    public func stop(_ vm: VMHandle, timeout: Duration) async {
        if !(await wait(vm, timeout: timeout)) {
            if let qmp = vm.controlSocket {
                _ = await QMPClient.execute("quit", socketPath: qmp)
            }
            if !(await wait(vm, timeout: .seconds(2))) {
                await kill(vm)
            }
        }
        await Virtiofsd.end(vm)
        if let cgroup = vm.cgroup { await VMCgroup.end(cgroup) }
        // try?: sockets of an ended VM; a leftover is harmless and reused by nobody
        try? FileManager.default.removeItem(atPath: vm.runDir)
    }

    public func kill(_ vm: VMHandle) async {
        if vm.isAlive {
            Glibc.kill(vm.pid, SIGKILL)
        }
        _ = await HostProcess.waitGone(pid: vm.pid, marker: vm.name, startTicks: vm.startTicks, timeout: .seconds(5))
        await Virtiofsd.end(vm)
    }

    /// An orphan QEMU is found by the `process=` name it was given (virtiofsd dies with its socket).
    public func reapOrphan(vmName: String, cgroupParent: String?) async {
        for pid in HostProcess.pids(withArgument: "process=" + vmName) { Glibc.kill(pid, SIGKILL) }
        await VMCgroup.end(VMCgroup.path(forVM: vmName, parent: cgroupParent))
    }

    public func joinPodCgroup(_ vm: VMHandle, parent: String, vcpus: Int, memoryMiB: Int) async throws(HypervisorError)
        -> VMHandle
    {
        let target = VMCgroup.path(forVM: vm.name, parent: parent)
        guard let current = vm.cgroup, current != target else { return vm }
        _ = try VMCgroup.create(target, QEMULimits.cgroup(vcpus: vcpus, memoryMiB: memoryMiB))
        do {
            try await VMCgroup.move(from: current, to: target)
        } catch {
            try? await VMCgroup.move(from: target, to: current)  // try?: back where it was, as far as it goes
            await VMCgroup.remove(target)
            throw error
        }
        var moved = vm
        moved.cgroup = target
        return moved
    }

    public func wait(_ vm: VMHandle, timeout: Duration) async -> Bool {
        await HostProcess.waitGone(pid: vm.pid, marker: vm.name, startTicks: vm.startTicks, timeout: timeout)
    }

    public func attachDisk(_ vm: VMHandle, path: String, serial: String, slot: Int) async throws(HypervisorError) {
        guard let qmp = vm.controlSocket else { throw .deviceFailed("\(vm.name) has no QMP socket") }
        // QEMU runs as the VM's user and cannot open the daemon's image files: it is handed the open
        // file, read-only, in an fd set of its own (named by the serial, never reused: a later disk
        // on the same slot must not find this one's descriptor), in the same QMP session that uses
        // it (QEMU drops an unused fd set when the session that added it ends).
        let fdset = Int.random(in: 1_000...Int(Int32.max))
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else {
            throw .deviceFailed("attach \(path) to \(vm.name): \(String(cString: strerror(errno)))")
        }
        defer { Glibc.close(fd) }
        let replies = await QMPClient.run(
            [
                QMPClient.command("add-fd", ["fdset-id": fdset, "opaque": "disk-" + serial]),
                QMPClient.command(
                    "blockdev-add",
                    [
                        "driver": "raw", "node-name": "n" + serial, "read-only": true,
                        "file": ["driver": "file", "filename": "/dev/fdset/\(fdset)", "read-only": true]
                            as [String: Any],
                    ]),
                QMPClient.command(
                    "device_add",
                    [
                        "driver": "scsi-hd", "bus": "scsi0.0", "drive": "n" + serial, "scsi-id": 0, "lun": slot,
                        "id": "d" + serial, "serial": serial,
                    ]),
            ], socketPath: qmp, passing: fd)
        for reply in replies where reply == nil || reply?.contains("\"error\"") == true {
            _ = await QMPClient.run(
                [
                    QMPClient.command("blockdev-del", ["node-name": "n" + serial]),
                    QMPClient.command("remove-fd", ["fdset-id": fdset]),
                ], socketPath: qmp)
            throw .deviceFailed("attach \(path) to \(vm.name): \(reply ?? "no answer from QEMU")")
        }
    }

    public func detachDisk(_ vm: VMHandle, serial: String, slot: Int) async throws(HypervisorError) {
        guard let qmp = vm.controlSocket else { throw .deviceFailed("\(vm.name) has no QMP socket") }
        _ = await QMPClient.run([QMPClient.command("device_del", ["id": "d" + serial])], socketPath: qmp)
        // The node stays in use until the guest has released the device.
        for _ in 0..<100 {
            let reply =
                await QMPClient.run([QMPClient.command("blockdev-del", ["node-name": "n" + serial])], socketPath: qmp)
                .first ?? nil
            guard let reply else { return }  // QEMU gone: nothing left to detach
            if !reply.contains("\"error\"") || reply.contains("Failed to find node") {
                await removeFDSets(of: serial, qmp: qmp)
                return
            }
            // try?: cancellation ends the wait early
            try? await Task.sleep(for: .milliseconds(50))
        }
        throw .deviceFailed("detach \(serial) from \(vm.name): the disk is still in use")
    }

    /// Closes QEMU's copies of a detached disk's file (its fd sets, found by their opaque name).
    private func removeFDSets(of serial: String, qmp: String) async {
        guard let reply = await QMPClient.run([QMPClient.command("query-fdsets")], socketPath: qmp).first ?? nil,
            let object = try? JSONSerialization.jsonObject(with: Data(reply.utf8)) as? [String: Any],
            let sets = object["return"] as? [[String: Any]]
        else { return }
        let ids = sets.compactMap { set -> Int? in
            let fds = set["fds"] as? [[String: Any]] ?? []
            return fds.contains { $0["opaque"] as? String == "disk-" + serial } ? set["fdset-id"] as? Int : nil
        }
        guard !ids.isEmpty else { return }
        _ = await QMPClient.run(ids.map { QMPClient.command("remove-fd", ["fdset-id": $0]) }, socketPath: qmp)
    }

    public func saveTemplate(_ vm: VMHandle, stateFD: Int32) async throws(HypervisorError) {
        guard let qmp = vm.controlSocket else { throw .deviceFailed("\(vm.name) has no QMP socket") }
        try await QEMUMigration.save(to: stateFD, qmp: qmp, vm: vm.name)
    }

    public func describe(_ vm: VMHandle) async -> VMStatus {
        vm.isAlive ? .running(pid: vm.pid) : .exited
    }

    public func stallReport(_ vm: VMHandle) async -> String? {
        guard vm.isAlive, let qmp = vm.controlSocket else { return nil }
        return await QEMUStallProbe.report(qmp: qmp, pid: vm.pid)
    }

    public func bootDefect(_ vm: VMHandle) async -> String? {
        guard vm.isAlive, let qmp = vm.controlSocket else { return nil }
        return await QEMUStallProbe.lapicTimerDefect(qmp: qmp)
    }

    public func kick(_ vm: VMHandle) async -> Bool {
        guard vm.isAlive, let qmp = vm.controlSocket else { return false }
        return await QEMUStallProbe.kick(qmp: qmp)
    }
}
