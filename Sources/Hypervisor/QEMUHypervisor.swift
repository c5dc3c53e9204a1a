import BootContract
import Foundation
import Logging
import Spawn

/// Runs each VM as its own `qemu-system-x86_64` process: microvm machine, KVM when usable and TCG
/// otherwise, serial console to a log file, QMP for control, daemonized so VMs outlive a daemon
/// restart. The agent channel is vsock when the host has vhost-vsock, else a virtio-serial port.
public struct QEMUHypervisor: Hypervisor {
    public let backend = Backend.qemu
    public let qemuBinary: String
    private let logger: Logger

    /// Debian's QEMU (apt: qemu-system-x86).
    public static let defaultBinary = "/usr/bin/qemu-system-x86_64"

    public init(qemuBinary: String = QEMUHypervisor.defaultBinary, logger: Logger = Logger(label: "cocoon.qemu")) {
        self.qemuBinary = qemuBinary
        self.logger = logger
    }

    public func boot(_ spec: VMSpec) async throws(HypervisorError) -> VMHandle {
        guard FileManager.default.isExecutableFile(atPath: qemuBinary) else {
            throw .unavailable("\(qemuBinary) not found (apt-get install qemu-system-x86)")
        }
        try spec.prepareFiles()
        let accel = try await Accelerator.shared.resolve(
            spec.accel, qemu: qemuBinary, kernel: spec.kernel, initrd: spec.initrd)
        let launched = HostProcess.nowNs()
        let layout = QEMULayout(spec: spec)
        let endpoint =
            VsockSupport.available
            ? AgentEndpoint.vsock(cid: VsockSupport.cid(for: spec.id), port: BootContract.agentVsockPort)
            : .serial(path: layout.agentSocket)
        let argv = [qemuBinary] + QEMUArguments.make(spec: spec, layout: layout, accel: accel, agent: endpoint)
        logger.debug("booting VM", metadata: ["vm": "\(spec.vmName)", "argv": "\(argv.joined(separator: " "))"])
        let result: HostProcess.Result
        do {
            result = try await HostProcess.run(argv, timeout: .seconds(60))
        } catch {
            throw .bootFailed("cannot start \(qemuBinary): \(error)")
        }
        guard result.status == 0 else {
            throw .bootFailed(
                "\(spec.vmName): qemu exited with status \(result.status): "
                    + "\(result.output.trimmingCharacters(in: .whitespacesAndNewlines))"
            )
        }
        // try?: no pid file yet: QEMU has not daemonized
        guard let text = try? String(contentsOfFile: layout.pidFile, encoding: .utf8),
            let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines))
        else {
            let console = (FileManager.default.contents(atPath: layout.consoleLog) ?? Data()).suffix(600)
            throw .bootFailed(
                "\(spec.vmName): qemu exited right after starting; console: \(String(decoding: console, as: UTF8.self))"
            )
        }
        return VMHandle(
            backend: backend, name: spec.vmName, pid: pid, accel: accel, agent: endpoint,
            controlSocket: layout.qmpSocket, consoleLog: layout.consoleLog, runDir: spec.runDir, launchedAtNs: launched)
    }

    public func kvmFailed(_ spec: VMSpec, reason: String) async {
        await Accelerator.shared.markUnusable(
            qemu: qemuBinary, kernel: spec.kernel, initrd: spec.initrd, reason: reason)
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
        // try?: sockets of an ended VM; a leftover is harmless and reused by nobody
        try? FileManager.default.removeItem(atPath: vm.runDir)
    }

    public func kill(_ vm: VMHandle) async {
        if HostProcess.isAlive(pid: vm.pid, marker: vm.name) {
            Glibc.kill(vm.pid, SIGKILL)
        }
        _ = await HostProcess.waitGone(pid: vm.pid, marker: vm.name, timeout: .seconds(5))
    }

    public func wait(_ vm: VMHandle, timeout: Duration) async -> Bool {
        await HostProcess.waitGone(pid: vm.pid, marker: vm.name, timeout: timeout)
    }

    public func attachDisk(_ vm: VMHandle, path: String, serial: String, slot: Int) async throws(HypervisorError) {
        guard let qmp = vm.controlSocket else { throw .deviceFailed("\(vm.name) has no QMP socket") }
        let replies = await QMPClient.run(
            [
                QMPClient.command(
                    "blockdev-add",
                    [
                        "driver": "raw", "node-name": "n" + serial, "read-only": true,
                        "file": ["driver": "file", "filename": path, "read-only": true] as [String: Any],
                    ]),
                QMPClient.command(
                    "device_add",
                    [
                        "driver": "scsi-hd", "bus": "scsi0.0", "drive": "n" + serial, "scsi-id": 0, "lun": slot,
                        "id": "d" + serial, "serial": serial,
                    ]),
            ], socketPath: qmp)
        for reply in replies where reply == nil || reply?.contains("\"error\"") == true {
            _ = await QMPClient.run([QMPClient.command("blockdev-del", ["node-name": "n" + serial])], socketPath: qmp)
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
            if !reply.contains("\"error\"") || reply.contains("Failed to find node") { return }
            // try?: cancellation ends the wait early
            try? await Task.sleep(for: .milliseconds(50))
        }
        throw .deviceFailed("detach \(serial) from \(vm.name): the disk is still in use")
    }

    public func describe(_ vm: VMHandle) async -> VMStatus {
        HostProcess.isAlive(pid: vm.pid, marker: vm.name) ? .running(pid: vm.pid) : .exited
    }
}

/// Where one QEMU VM keeps its files.
struct QEMULayout {
    let agentSocket: String
    let qmpSocket: String
    let pidFile: String
    let consoleLog: String

    init(spec: VMSpec) {
        agentSocket = spec.runDir + "/agent.sock"
        qmpSocket = spec.runDir + "/qmp.sock"
        pidFile = spec.runDir + "/qemu.pid"
        consoleLog = spec.stateDir + "/console.log"
    }
}

/// The QEMU command line for one pod VM (a pure function, unit-tested).
enum QEMUArguments {
    static func make(spec: VMSpec, layout: QEMULayout, accel: Accel, agent: AgentEndpoint) -> [String] {
        // QEMU's option syntax doubles commas inside a value.
        let agentImage = spec.agentImage.replacingOccurrences(of: ",", with: ",,")
        var args = [
            "-name", "\(spec.vmName),process=\(spec.vmName)",
            "-M", accel == .kvm ? "microvm,accel=kvm,rtc=on" : "microvm,accel=tcg,rtc=on",
            "-cpu", GuestCPU.qemu(accel),
            "-smp", "\(spec.vcpus)",
            "-m", "\(spec.memoryMiB)M",
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-kernel", spec.kernel, "-initrd", spec.initrd,
            "-append", GuestKernelArgs.make(transport: agent, bus: .mmio, pciOff: true, extra: spec.extraKernelArgs),
            "-serial", "file:\(layout.consoleLog)",
            "-qmp", "unix:\(layout.qmpSocket),server=on,wait=off",
            "-drive",
            "file=\(agentImage),if=none,id=agent-disk,format=raw,readonly=on",
            "-device", "virtio-blk-device,drive=agent-disk",
            "-device", "virtio-balloon-device,free-page-reporting=on",
            // Image disks are hot-plugged onto this bus (virtio-mmio devices cannot be hot-plugged).
            "-device", "virtio-scsi-device,id=scsi0",
            "-pidfile", layout.pidFile,
            "-daemonize",
        ]
        switch agent {
        case .serial(let path):
            args += [
                "-device", "virtio-serial-device",
                "-chardev", "socket,id=agent,path=\(path),server=on,wait=off",
                "-device", "virtserialport,chardev=agent,name=\(BootContract.agentPortName)",
            ]
        case .vsock(let cid, _):
            args += ["-device", "vhost-vsock-device,guest-cid=\(cid)"]
        }
        return args
    }
}

/// vsock needs the host's vhost-vsock device; each VM gets a context id derived from its id.
enum VsockSupport {
    static var available: Bool { access("/dev/vhost-vsock", R_OK | W_OK) == 0 }

    /// A context id in [3, 2^31) derived from the sandbox id (FNV-1a), stable across restarts.
    static func cid(for id: String) -> UInt32 {
        var h: UInt32 = 2_166_136_261
        for b in id.utf8 { h = (h ^ UInt32(b)) &* 16_777_619 }
        return 3 + h % 0x7FFF_FFF0
    }
}
