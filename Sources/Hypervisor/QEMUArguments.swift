import BootContract
import Foundation
import Logging
import Models
import Spawn

/// Where one QEMU VM keeps its files.
struct QEMULayout {
    let agentSocket: String
    let qmpSocket: String
    /// QEMU's own stdout and stderr (its error messages).
    let outputLog: String
    let consoleLog: String

    init(spec: VMSpec) {
        agentSocket = spec.runDir + "/agent.sock"
        qmpSocket = spec.runDir + "/qmp.sock"
        outputLog = spec.runDir + "/qemu.log"
        consoleLog = spec.stateDir + "/console.log"
    }
}

/// The QEMU command line for one pod VM (a pure function, unit-tested).
enum QEMUArguments {
    /// QEMU's seccomp filter (as libvirt sets it): no obsolete system calls, no set*uid, no fork or
    /// exec, no scheduler or affinity changes.
    static let sandbox = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"

    static func make(spec: VMSpec, layout: QEMULayout, accel: Accel, agent: AgentEndpoint, files: QEMUFiles.Paths)
        -> [String]
    {
        var args = machine(spec: spec, accel: accel, agent: agent, files: files)
        if let ram = files.ramFD { args += guestRAM(spec: spec, ramFD: ram) }
        if let socket = files.fsSocketFD {
            // virtio-fs: modern virtio-mmio (vhost-user has no legacy devices; the guest's drivers
            // speak both).
            args += [
                "-global", "virtio-mmio.force-legacy=false",
                "-chardev", "socket,id=fs,fd=\(socket)",
                "-device", "vhost-user-fs-device,chardev=fs,tag=\(BootContract.sharedFSTag),queue-size=1024",
            ]
        }
        if let token = files.token {
            args += ["-fw_cfg", "name=\(BootContract.agentTokenFwCfgName),file=\(token)"]
        }
        if let nic = spec.nic { args += network(spec: spec, nic: nic, files: files) }
        args += agentChannel(agent, files: files)
        if case .clone = spec.origin { args += ["-S", "-incoming", "defer"] }
        return args
    }

    /// The machine, its boot files, console, QMP monitor and the devices every VM has.
    private static func machine(spec: VMSpec, accel: Accel, agent: AgentEndpoint, files: QEMUFiles.Paths)
        -> [String]
    {
        let memoryBackend = files.ramFD != nil ? ",memory-backend=ram" : ""
        // Free-page reporting discards guest pages: in a clone that would punch holes in the
        // template's memory file on QEMU 7.2, and a template's clones must have its devices.
        let pageReporting = spec.origin == .boot ? "on" : "off"
        return [
            "-name", "\(spec.vmName),process=\(spec.vmName),debug-threads=on",
            "-M", "microvm,rtc=on\(memoryBackend)",
            "-accel", accel == .kvm ? "kvm" : "tcg,tb-size=\(QEMULimits.tcgCacheMiB)",
            "-cpu", GuestCPU.qemu(accel),
            "-smp", "\(spec.vcpus)",
            "-m", "\(spec.memoryMiB)M",
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-kernel", files.kernel, "-initrd", files.initrd,
            "-append", GuestKernelArgs.make(transport: agent, bus: .mmio, pciOff: true, extra: spec.extraKernelArgs),
            "-serial", "file:\(files.console)",
            "-chardev", "socket,id=qmp,fd=\(files.qmpFD),server=on,wait=off", "-mon", "chardev=qmp,mode=control",
            "-drive",
            "file=\(files.agentImage),if=none,id=agent-disk,format=raw,readonly=on",
            "-device", "virtio-blk-device,drive=agent-disk",
            "-device", "virtio-balloon-device,free-page-reporting=\(pageReporting)",
            // Image disks are hot-plugged onto this bus (virtio-mmio devices cannot be hot-plugged).
            "-device", "virtio-scsi-device,id=scsi0",
            "-sandbox", sandbox,
        ]
    }

    /// Guest RAM backed by the memory file QEMU was handed.
    private static func guestRAM(spec: VMSpec, ramFD ram: Int) -> [String] {
        // Shared for virtiofsd (which maps it too) and for a template (whose RAM is the file its
        // clones start from); private, copy-on-write, for a clone.
        var share = "on"
        if case .clone = spec.origin { share = "off" }
        return [
            "-object",
            "memory-backend-file,id=ram,size=\(spec.memoryMiB)M,mem-path=/proc/self/fd/\(ram),share=\(share)",
        ]
    }

    /// The pod's NIC on its tap (with vhost-net when QEMU has a descriptor for it).
    private static func network(spec: VMSpec, nic: VMNic, files: QEMUFiles.Paths) -> [String] {
        // A template's clones resume with its NIC address; their agents give it the pod's.
        let mac = spec.origin == .boot ? nic.mac : BootContract.templateMAC
        if let tap = files.tapFD {
            let vhost = files.vhostFD.map { ",vhost=on,vhostfd=\($0)" } ?? ""
            return [
                "-netdev", "tap,id=net0,fd=\(tap)\(vhost)",
                "-device", "virtio-net-device,netdev=net0,mac=\(mac),host_mtu=\(nic.mtu)",
            ]
        } else if spec.origin != .boot {
            return ["-device", "virtio-net-device,mac=\(mac),host_mtu=\(nic.mtu)"]
        }
        return []
    }

    /// The agent's channel: a virtio-serial port on a socket, or a vsock device.
    private static func agentChannel(_ agent: AgentEndpoint, files: QEMUFiles.Paths) -> [String] {
        switch agent {
        case .serial(let path):
            let socket = files.agentFD.map { "fd=\($0)" } ?? "path=\(path)"
            return [
                "-device", "virtio-serial-device",
                "-chardev", "socket,id=agent,\(socket),server=on,wait=off",
                "-device", "virtserialport,chardev=agent,name=\(BootContract.agentPortName)",
            ]
        case .vsock(let cid, _):
            return ["-device", "vhost-vsock-device,guest-cid=\(cid)"]
        }
    }
}
