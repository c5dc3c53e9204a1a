import BootContract
import CLibvirt
import Foundation
import Logging
import Spawn

/// Runs each VM as a transient libvirt domain on `qemu:///system` (type `kvm` when usable, `qemu`
/// otherwise): q35 with direct kernel boot, file-backed serial console, the agent channel as a
/// virtio-serial port bound to a Unix socket, the pod's shared directory through a virtiofsd cocoond
/// starts (`<filesystem>` on its socket, guest RAM a shared memfd). QEMU runs as root for these
/// domains (a per-domain DAC label), so it can use the daemon's files without libvirt relabelling them.
public struct LibvirtHypervisor: Hypervisor {
    public let backend = Backend.libvirt
    /// libvirt opens the tap itself (`managed='no'`: an existing tap, found by name in libvirtd's
    /// namespace); cocoond then moves it into the pod's namespace.
    public let sharesDirectories = true
    /// Templates need QEMU's migration to a descriptor and a RAM file mapped privately: not through libvirt here.
    public let makesTemplates = false
    public let opensTapByName = true
    public let uri: String
    private let logger: Logger

    public init(uri: String = "qemu:///system", logger: Logger = Logger(label: "cocoon.libvirt")) {
        self.uri = uri
        self.logger = logger
    }

    public func boot(_ spec: VMSpec) async throws(HypervisorError) -> VMHandle {
        try spec.prepareFiles()
        guard spec.origin == .boot else { throw .invalidSpec("\(spec.vmName): the libvirt backend makes no templates") }
        let accel = try await Accelerator.shared.resolve(
            spec.accel, qemu: QEMUHypervisor.defaultBinary, kernel: spec.kernel, initrd: spec.initrd)
        let agentSocket = spec.runDir + "/agent.sock"
        let console = spec.stateDir + "/console.log"
        let xml = LibvirtDomainXML.make(
            spec: spec, accel: accel, agentSocket: agentSocket, consoleLog: console,
            fsSocket: spec.sharedDir == nil ? nil : Virtiofsd.socketPath(runDir: spec.runDir))
        let launched = HostProcess.nowNs()
        // The pod's virtiofsd, listening on a path libvirt's QEMU (root, as every domain here) connects to.
        var fsDaemon: Int32?
        if let shared = spec.sharedDir {
            fsDaemon =
                try Virtiofsd.start(
                    sharedDir: shared, cache: spec.sharedCache, runDir: spec.runDir, cgroupProcs: [], connect: false
                ).pid
        }
        let uri = self.uri
        let pid: Int32
        do throws(HypervisorError) {
            pid = try await Libvirt.blocking { () throws(HypervisorError) -> Int32 in
                let conn = try Libvirt.open(uri)
                defer { virConnectClose(conn) }
                guard let dom = virDomainCreateXML(conn, xml, 0) else {
                    throw .bootFailed("\(spec.vmName): virDomainCreateXML: \(Libvirt.lastError())")
                }
                virDomainFree(dom)
                return Libvirt.qemuPid(name: spec.vmName) ?? 0
            }
        } catch {
            if let fsDaemon { Virtiofsd.abandon(fsDaemon) }
            throw error
        }
        var handle = VMHandle(
            backend: backend, name: spec.vmName, pid: pid, accel: accel, agent: .serial(path: agentSocket),
            controlSocket: nil, consoleLog: console, runDir: spec.runDir, launchedAtNs: launched)
        handle.sharedDir = spec.sharedDir
        handle.fsDaemonPid = fsDaemon
        return handle
    }

    public func noteKVMBoot(_ spec: VMSpec, failure: String?) async {
        await Accelerator.shared.note(
            qemu: QEMUHypervisor.defaultBinary, kernel: spec.kernel, initrd: spec.initrd, failure: failure)
    }

    /// libvirt keeps its domains in cgroups of its own (`machine.slice`): the VM stays there.
    public func joinPodCgroup(_ vm: VMHandle, parent: String, vcpus: Int, memoryMiB: Int) async throws(HypervisorError)
        -> VMHandle
    { vm }

    public func stop(_ vm: VMHandle, timeout: Duration) async {
        if !(await wait(vm, timeout: timeout)) {
            await kill(vm)
        }
        await Virtiofsd.end(vm)
        // try?: sockets of an ended VM; a leftover is harmless
        try? FileManager.default.removeItem(atPath: vm.runDir)
    }

    public func kill(_ vm: VMHandle) async {
        let uri = self.uri
        let name = vm.name
        // try?: a domain already gone is what stop wants
        _ = try? await Libvirt.blocking { () throws(HypervisorError) -> Void in
            let conn = try Libvirt.open(uri)
            defer { virConnectClose(conn) }
            guard let dom = virDomainLookupByName(conn, name) else { return }
            defer { virDomainFree(dom) }
            virDomainDestroy(dom)
        }
        _ = await wait(vm, timeout: .seconds(5))
        await Virtiofsd.end(vm)
    }

    public func wait(_ vm: VMHandle, timeout: Duration) async -> Bool {
        let clock = ContinuousClock()
        let end = clock.now + timeout
        while await describe(vm) != .exited {
            if clock.now >= end { return false }
            // try?: cancellation ends the wait early
            try? await Task.sleep(for: .milliseconds(50))
        }
        return true
    }

    public func attachDisk(_ vm: VMHandle, path: String, serial: String, slot: Int) async throws(HypervisorError) {
        try await changeDevice(vm, LibvirtDomainXML.disk(path: path, serial: serial, slot: slot), attach: true)
    }

    public func detachDisk(_ vm: VMHandle, serial: String, slot: Int) async throws(HypervisorError) {
        try await changeDevice(vm, LibvirtDomainXML.disk(path: "", serial: serial, slot: slot), attach: false)
    }

    public func saveTemplate(_ vm: VMHandle, stateFD: Int32) async throws(HypervisorError) {
        throw .invalidSpec("\(vm.name): the libvirt backend makes no templates (start = \"template\" needs qemu)")
    }

    private func changeDevice(_ vm: VMHandle, _ xml: String, attach: Bool) async throws(HypervisorError) {
        let uri = self.uri
        let name = vm.name
        try await Libvirt.blocking { () throws(HypervisorError) -> Void in
            let conn = try Libvirt.open(uri)
            defer { virConnectClose(conn) }
            guard let dom = virDomainLookupByName(conn, name) else { throw .deviceFailed("domain \(name) not found") }
            defer { virDomainFree(dom) }
            let flags = UInt32(VIR_DOMAIN_AFFECT_LIVE.rawValue)
            let rc = attach ? virDomainAttachDeviceFlags(dom, xml, flags) : virDomainDetachDeviceFlags(dom, xml, flags)
            if rc != 0 {
                throw .deviceFailed("\(attach ? "attach" : "detach") disk on \(name): \(Libvirt.lastError())")
            }
        }
    }

    public func describe(_ vm: VMHandle) async -> VMStatus {
        let uri = self.uri
        let name = vm.name
        // try?: libvirtd unreachable: the VM counts as ended
        let running =
            (try? await Libvirt.blocking { () throws(HypervisorError) -> Bool in
                let conn = try Libvirt.open(uri)
                defer { virConnectClose(conn) }
                guard let dom = virDomainLookupByName(conn, name) else { return false }
                defer { virDomainFree(dom) }
                return virDomainIsActive(dom) == 1
            }) ?? HostProcess.isAlive(pid: vm.pid, marker: vm.name)
        // A domain whose QEMU was killed from outside can linger as active for a moment; trust the process.
        if running, vm.pid > 0, !HostProcess.isAlive(pid: vm.pid, marker: vm.name) { return .exited }
        return running ? .running(pid: vm.pid) : .exited
    }
}

/// libvirt C API helpers: connections, errors, and running blocking calls off the cooperative pool.
enum Libvirt {
    static func open(_ uri: String) throws(HypervisorError) -> virConnectPtr {
        guard let conn = virConnectOpen(uri) else {
            throw .unavailable("cannot connect to \(uri): \(lastError()) (is libvirtd running?)")
        }
        return conn
    }

    static func lastError() -> String {
        guard let msg = virGetLastErrorMessage() else { return "unknown libvirt error" }
        return String(cString: msg)
    }

    /// QEMU's pid for a running domain, from the pid file libvirt keeps.
    static func qemuPid(name: String) -> Int32? {
        // try?: no pid file: the domain is not running
        guard let text = try? String(contentsOfFile: "/run/libvirt/qemu/\(name).pid", encoding: .utf8) else {
            return nil
        }
        return Int32(text.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    static func blocking<T: Sendable>(_ body: @escaping @Sendable () throws(HypervisorError) -> T)
        async throws(HypervisorError) -> T
    {
        try await OffPool.run(body)
    }
}

/// The domain definition for one pod VM (a pure function, unit-tested).
enum LibvirtDomainXML {
    static func make(spec: VMSpec, accel: Accel, agentSocket: String, consoleLog: String, fsSocket: String? = nil)
        -> String
    {
        let cmdline = GuestKernelArgs.make(
            transport: .serial(path: agentSocket), bus: .pci, pciOff: false, extra: spec.extraKernelArgs)
        // The agent token reaches the guest through fw_cfg from its 0600 file (libvirt >= 6.5).
        let token = spec.agentTokenFile.map {
            "<sysinfo type='fwcfg'><entry name='\(BootContract.agentTokenFwCfgName)' file='\(escape($0))'/></sysinfo>"
        }
        // virtio-fs (vhost-user): guest RAM a shared memfd, and the pod's running virtiofsd.
        let sharedRAM =
            fsSocket == nil ? "" : "<memoryBacking><source type='memfd'/><access mode='shared'/></memoryBacking>"
        let filesystem = fsSocket.map {
            "<filesystem type='mount'><driver type='virtiofs' queue='1024'/><source socket='\(escape($0))'/>"
                + "<target dir='\(BootContract.sharedFSTag)'/></filesystem>"
        }
        return """
            <domain type='\(accel == .kvm ? "kvm" : "qemu")'>
              <name>\(escape(spec.vmName))</name>
              <memory unit='MiB'>\(spec.memoryMiB)</memory>
              \(sharedRAM)
              <vcpu>\(spec.vcpus)</vcpu>
              <os>
                <type arch='x86_64' machine='q35'>hvm</type>
                <kernel>\(escape(spec.kernel))</kernel>
                <initrd>\(escape(spec.initrd))</initrd>
                <cmdline>\(escape(cmdline))</cmdline>
              </os>
              \(token ?? "")
              \(GuestCPU.libvirt(accel))
              <on_poweroff>destroy</on_poweroff>
              <on_reboot>destroy</on_reboot>
              <on_crash>destroy</on_crash>
              <seclabel type='static' model='dac' relabel='no'><label>+0:+0</label></seclabel>
              <devices>
                <serial type='file'><source path='\(escape(consoleLog))'/><target port='0'/></serial>
                <channel type='unix'>
                  <source mode='bind' path='\(escape(agentSocket))'/>
                  <target type='virtio' name='\(BootContract.agentPortName)'/>
                </channel>
                <disk type='file' device='disk'>
                  <driver name='qemu' type='raw'/>
                  <source file='\(escape(spec.agentImage))'/>
                  <target dev='vda' bus='virtio'/>
                  <readonly/>
                </disk>
                \(spec.nic.map(interface) ?? "")
                \(filesystem ?? "")
                <controller type='scsi' index='0' model='virtio-scsi'/>
                <memballoon model='virtio' freePageReporting='on'/>
              </devices>
            </domain>
            """
    }

    /// The pod's NIC: virtio on the existing tap cocoond made, with the pod interface's MAC and MTU.
    static func interface(_ nic: VMNic) -> String {
        """
        <interface type='ethernet'>
          <mac address='\(escape(nic.mac))'/>
          <target dev='\(escape(nic.tapName))' managed='no'/>
          <model type='virtio'/>
          <mtu size='\(nic.mtu)'/>
        </interface>
        """
    }

    /// A read-only image disk on the SCSI controller, at unit `slot`, found in the guest by serial.
    static func disk(path: String, serial: String, slot: Int) -> String {
        """
        <disk type='file' device='disk'>
          <driver name='qemu' type='raw'/>
          \(path.isEmpty ? "" : "<source file='\(escape(path))'/>")
          <target dev='sd\(driveLetters(slot))' bus='scsi'/>
          <address type='drive' controller='0' bus='0' target='0' unit='\(slot)'/>
          <serial>\(escape(serial))</serial>
          <readonly/>
        </disk>
        """
    }

    /// 0 → "a", 25 → "z", 26 → "aa": libvirt's disk target naming.
    static func driveLetters(_ index: Int) -> String {
        let letters = Array("abcdefghijklmnopqrstuvwxyz")
        return index < 26 ? String(letters[index]) : String(letters[index / 26 - 1]) + String(letters[index % 26])
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "'", with: "&apos;")
    }
}
