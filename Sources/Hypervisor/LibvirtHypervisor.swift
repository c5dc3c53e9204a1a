import BootContract
import CLibvirt
import Foundation
import Logging
import Models
import Spawn

/// Runs each VM as a transient libvirt domain on `qemu:///system` (type `kvm` when usable, `qemu`
/// otherwise): q35 with direct kernel boot, the console through virtlogd (capped and rotated), the
/// agent channel as a virtio-serial port bound to a Unix socket, the pod's shared directory through a
/// virtiofsd cocoond starts (`<filesystem>` on its socket, guest RAM a shared memfd).
///
/// The jail is the qemu backend's, as far as libvirt can give it: QEMU runs as the VM's own user (a
/// static DAC label, no relabelling: it reaches its token copy and virtiofsd's socket in its run
/// directory (`LibvirtJail`), the world-readable guest image, and its own disk directory where each
/// image disk is linked while it is attached), with libvirt's default seccomp filter (`-sandbox
/// on,...`) and private /dev; QEMU and virtiofsd are moved into the pod's VM cgroup (under CRI's
/// `cgroup_parent`) with the qemu backend's limits, libvirt's own `cputune` bounding the moment
/// before. libvirt cannot start QEMU in the pod's network or PID namespace
/// (`RuntimeHandler.libvirtMissingJail`): a libvirt handler loads only with `trusted_guests = true`.
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
        let user = Self.vmUser(spec, accel: accel)
        let cgroupPath = VMCgroup.path(forVM: spec.vmName, parent: spec.cgroupParent)
        let procs = try VMCgroup.create(cgroupPath, QEMULimits.cgroup(spec: spec))
        var fsDaemon: Int32?
        func abandon() async {
            if let fsDaemon { await Virtiofsd.abandon(fsDaemon) }
            await VMCgroup.remove(cgroupPath)
            // try?: the disk directory of a VM that never ran; a leftover is replaced by the next
            try? FileManager.default.removeItem(atPath: LibvirtJail.diskDir(spec))
        }
        let files: LibvirtJail.Files
        do throws(HypervisorError) {
            let prepared = try await Self.prepare(spec, user: user, procs: procs)
            files = prepared.files
            fsDaemon = prepared.fsDaemon
        } catch {
            await abandon()
            throw error
        }
        let xml = LibvirtDomainXML.make(
            spec: spec, accel: accel, user: user, files: files,
            fsSocket: spec.sharedDir == nil ? nil : Virtiofsd.socketPath(runDir: spec.runDir))
        let launched = HostProcess.nowNs()
        let pid: Int32
        do throws(HypervisorError) {
            pid = try await create(xml, vmName: spec.vmName)
            // Out of libvirt's cgroups (memory, cpu, pids) into the pod's, as the qemu backend's QEMU.
            try VMCgroup.join(pid: pid, procs: procs)
        } catch {
            await destroy(spec.vmName)
            await abandon()
            throw error
        }
        var handle = VMHandle(
            backend: backend, name: spec.vmName, pid: pid, accel: accel, agent: .serial(path: files.agentSocket),
            controlSocket: nil, consoleLog: files.consoleLog, runDir: spec.runDir, launchedAtNs: launched)
        handle.sharedDir = spec.sharedDir
        handle.fsDaemonPid = fsDaemon
        handle.uid = user.uid
        handle.cgroup = cgroupPath
        handle.diskDir = files.diskDir
        handle.seccomp = LibvirtJail.seccomp(pid: pid)
        handle.startTicks = HostProcess.startTicks(pid)
        return handle
    }

    /// The VM's user; under KVM its group is /dev/kvm's (a numeric label gets no supplementary groups).
    private static func vmUser(_ spec: VMSpec, accel: Accel) -> VMUser {
        let base = spec.user ?? VMUser(uid: 0, gid: 0)
        return VMUser(
            uid: base.uid, gid: accel == .kvm && base.uid != 0 ? KVMDevice.groups.first ?? base.gid : base.gid)
    }

    /// Prepares the VM's jail (its files and disk directory) and starts the pod's virtiofsd, if it shares a directory.
    private static func prepare(_ spec: VMSpec, user: VMUser, procs: [String])
        async
        throws(HypervisorError) -> (files: LibvirtJail.Files, fsDaemon: Int32?)
    {
        try LibvirtJail.checkPassable(spec)
        let files = try LibvirtJail.prepare(spec: spec, user: user)
        try LibvirtJail.makeDiskDir(files.diskDir, user: user)
        // The pod's virtiofsd, in the pod's cgroup, listening on a socket only the VM's user may use.
        var fsDaemon: Int32?
        if let shared = spec.sharedDir {
            fsDaemon =
                try await Virtiofsd.start(
                    sharedDir: shared, cache: spec.sharedCache, runDir: spec.runDir, cgroupProcs: procs,
                    connect: false, socketOwner: user, mountNamespace: spec.sharedMountNamespace
                ).pid
        }
        return (files, fsDaemon)
    }

    /// Creates the transient domain and returns its QEMU's pid (a domain whose pid is unknown is destroyed).
    private func create(_ xml: String, vmName: String) async throws(HypervisorError) -> Int32 {
        let uri = self.uri
        return try await Libvirt.blocking { () throws(HypervisorError) -> Int32 in
            let conn = try Libvirt.open(uri)
            defer { virConnectClose(conn) }
            guard let dom = virDomainCreateXML(conn, xml, 0) else {
                throw .bootFailed("\(vmName): virDomainCreateXML: \(Libvirt.lastError())")
            }
            defer { virDomainFree(dom) }
            // (Never 0 below: writing 0 to cgroup.procs would move cocoond itself.)
            guard let pid = Libvirt.qemuPid(name: vmName), pid > 0 else {
                virDomainDestroy(dom)
                throw .bootFailed("\(vmName): libvirt started the domain but its QEMU pid is unknown")
            }
            return pid
        }
    }

    /// Destroys a domain by name (nothing when there is none).
    private func destroy(_ name: String) async {
        let uri = self.uri
        // try?: a domain already gone is what the caller wants
        _ = try? await Libvirt.blocking { () throws(HypervisorError) -> Void in
            let conn = try Libvirt.open(uri)
            defer { virConnectClose(conn) }
            guard let dom = virDomainLookupByName(conn, name) else { return }
            defer { virDomainFree(dom) }
            virDomainDestroy(dom)
        }
    }

    /// An orphan domain is destroyed by name; what it had moved into the pod's VM cgroup ends too.
    public func reapOrphan(vmName: String, cgroupParent: String?) async {
        await destroy(vmName)
        await VMCgroup.end(VMCgroup.path(forVM: vmName, parent: cgroupParent))
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
        if let cgroup = vm.cgroup { await VMCgroup.end(cgroup) }
        // try?: sockets and links of an ended VM; a leftover is harmless
        try? FileManager.default.removeItem(atPath: vm.runDir)
        if let dir = vm.diskDir { try? FileManager.default.removeItem(atPath: dir) }
    }

    public func kill(_ vm: VMHandle) async {
        await destroy(vm.name)
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

    /// QEMU runs as the VM's user and cannot reach the daemon's image files: it opens a hard link in
    /// the VM's own disk directory, removed once QEMU holds the file. (libvirt 9.0's `fdgroup` would
    /// pass a descriptor instead, but its disk hotplug never hands the descriptor to QEMU.)
    public func attachDisk(_ vm: VMHandle, path: String, serial: String, slot: Int) async throws(HypervisorError) {
        guard let dir = vm.diskDir else { throw .deviceFailed("\(vm.name) has no disk directory") }
        let link = try LibvirtJail.link(path, into: dir, as: serial)
        defer { unlink(link) }
        try await changeDevice(vm, LibvirtDomainXML.disk(path: link, serial: serial, slot: slot), attach: true)
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
        if running, vm.pid > 0, !vm.isAlive { return .exited }
        return running ? .running(pid: vm.pid) : .exited
    }
}

/// libvirt C API helpers: connections, errors, and running blocking calls off the cooperative pool.
enum Libvirt {
    /// libvirt prints every error to stderr unless told otherwise; cocoond reports its errors itself
    /// (a lookup of a domain that ended is routine).
    private static let quiet: Void = virSetErrorFunc(nil) { _, _ in }

    static func open(_ uri: String) throws(HypervisorError) -> virConnectPtr {
        _ = quiet
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
