import BootContract
import CSpawn
import Foundation
import Spawn

/// The files of one QEMU VM, opened by the daemon and handed to QEMU as descriptors: QEMU runs as
/// the VM's own user and could not open them by path (the state root is the daemon's alone). QEMU
/// opens each again through `/proc/self/fd/N`, which checks only the file's own permissions: the
/// guest image is world-readable, the console log and the token belong to the VM's user, and no
/// directory on the way needs to let it in. Its QMP and agent sockets are listening sockets cocoond
/// made in the run directory (root's, 0700), as libvirt does: QEMU never touches a path there.
struct QEMUFiles {
    /// What QEMU's arguments name: descriptor paths and numbers.
    struct Paths {
        var kernel: String
        var initrd: String
        var agentImage: String
        var console: String
        var token: String?
        /// The listening QMP socket and (serial transport) agent socket.
        var qmpFD: Int
        var agentFD: Int?
        /// The pod's tap and, where the host has /dev/vhost-net, a vhost-net descriptor for it.
        var tapFD: Int?
        var vhostFD: Int?
        /// Guest RAM (a memfd of its final size) and QEMU's end of virtiofsd's socket, for a VM with
        /// a shared directory.
        var ramFD: Int?
        var fsSocketFD: Int?
    }

    /// Descriptors the VM keeps (as 3, 4, ...), in the order of `paths`.
    let kept: [Int32]
    /// QEMU's stdout and stderr.
    let output: Int32
    let paths: Paths

    static func open(spec: VMSpec, layout: QEMULayout, user: VMUser, agentSerial: Bool, fsSocket: Int32? = nil)
        throws(HypervisorError) -> QEMUFiles
    {
        var fds = QEMUDescriptors(vmName: spec.vmName)
        chmod(spec.runDir, 0o700)
        let kernel = try fds.readOnly(spec.kernel, "guest kernel")
        let initrd = try fds.readOnly(spec.initrd, "guest initrd")
        let agentImage = try fds.readOnly(spec.agentImage, "agent image")
        let console = try fds.consoleLog(layout.consoleLog, user: user)
        var token: String?
        if let tokenFile = spec.agentTokenFile {
            token = try fds.token(tokenFile, user: user)
        }
        let qmp = try fds.listening(layout.qmpSocket, "QMP socket")
        let agent = agentSerial ? try fds.listening(layout.agentSocket, "agent socket") : nil
        var tap: Int?
        var vhost: Int?
        if let nic = spec.nic, nic.tapFD >= 0 {
            let nicFDs = try fds.tap(nic)
            tap = nicFDs.tap
            vhost = nicFDs.vhost
        }
        var ram: Int?
        var fsSocketFD: Int?
        switch spec.origin {
        case .boot: break
        case .template(let ramFD), .clone(let ramFD, _):
            ram = try fds.copy(ramFD, "template RAM", "memfd")
        }
        if let fsSocket {
            // Guest RAM that virtiofsd can map too (vhost-user), made here at its final size and sealed:
            // QEMU would otherwise create and grow it itself, past its own file size limit.
            let memfd = cocoon_guest_ram(spec.vmName, UInt64(spec.memoryMiB) << 20)
            guard memfd >= 0 else { throw fds.fail("guest RAM", "memfd") }
            ram = fds.keep(memfd)
            fsSocketFD = try fds.copy(fsSocket, "virtiofsd socket", Virtiofsd.socketPath(runDir: spec.runDir))
        }
        let output = Glibc.open(layout.outputLog, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard output >= 0 else { throw fds.fail("output log", layout.outputLog) }
        return QEMUFiles(
            kept: fds.kept, output: output,
            paths: Paths(
                kernel: kernel, initrd: initrd, agentImage: agentImage, console: console, token: token, qmpFD: qmp,
                agentFD: agent, tapFD: tap, vhostFD: vhost, ramFD: ram, fsSocketFD: fsSocketFD))
    }

    func close() {
        for fd in kept { Glibc.close(fd) }
        Glibc.close(output)
    }
}

/// The descriptors `QEMUFiles.open` hands QEMU, numbered 3, 4, ... in the order they are kept; a failure
/// closes every one kept so far.
private struct QEMUDescriptors {
    let vmName: String
    private(set) var kept: [Int32] = []

    init(vmName: String) { self.vmName = vmName }

    /// Closes the descriptors kept so far and describes what could not be opened (the reason from errno).
    func fail(_ what: String, _ path: String) -> HypervisorError {
        let reason = String(cString: strerror(errno))
        for fd in kept { Glibc.close(fd) }
        return .bootFailed("\(vmName): cannot open the \(what) \(path): \(reason)")
    }

    /// Keeps `fd` for QEMU and returns the descriptor number it has there.
    mutating func keep(_ fd: Int32) -> Int {
        kept.append(fd)
        return 3 + kept.count - 1
    }

    /// Keeps `fd` and returns the path by which QEMU opens it again.
    mutating func path(_ fd: Int32) -> String { "/proc/self/fd/\(keep(fd))" }

    /// Opens a file read-only for QEMU and returns its path there.
    mutating func readOnly(_ file: String, _ what: String) throws(HypervisorError) -> String {
        let fd = Glibc.open(file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { throw fail(what, file) }
        return path(fd)
    }

    /// The console log: a fresh file of the VM's user (QEMU opens it again for writing).
    mutating func consoleLog(_ log: String, user: VMUser) throws(HypervisorError) -> String {
        unlink(log)
        let fd = Glibc.open(log, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0, fchown(fd, user.uid, user.gid) == 0 else {
            throw fail("console log", log)
        }
        return path(fd)
    }

    /// The agent token, made the VM's user's alone (read-only).
    mutating func token(_ tokenFile: String, user: VMUser) throws(HypervisorError) -> String {
        let fd = Glibc.open(tokenFile, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0, fchown(fd, user.uid, user.gid) == 0, fchmod(fd, 0o400) == 0 else {
            throw fail("agent token", tokenFile)
        }
        return path(fd)
    }

    /// A listening Unix socket at `socketPath` (replacing what was there); returns its descriptor number.
    mutating func listening(_ socketPath: String, _ what: String) throws(HypervisorError) -> Int {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        unlink(socketPath)
        guard fd >= 0, UnixSocketAddress.bind(fd, path: socketPath), listen(fd, 4) == 0 else {
            if fd >= 0 { Glibc.close(fd) }
            throw fail(what, socketPath)
        }
        return keep(fd)
    }

    /// Keeps a copy of a descriptor of the daemon's; returns its number.
    mutating func copy(_ fd: Int32, _ what: String, _ path: String) throws(HypervisorError) -> Int {
        let duplicate = fcntl(fd, F_DUPFD_CLOEXEC, 3)
        guard duplicate >= 0 else { throw fail(what, path) }
        return keep(duplicate)
    }

    /// The pod's tap and, where the host has /dev/vhost-net, a vhost-net descriptor for it.
    mutating func tap(_ nic: VMNic) throws(HypervisorError) -> (tap: Int, vhost: Int?) {
        let tap = try copy(nic.tapFD, "pod tap", nic.tapName)
        let vhostFD = Glibc.open("/dev/vhost-net", O_RDWR | O_CLOEXEC)
        return (tap, vhostFD >= 0 ? keep(vhostFD) : nil)
    }
}

/// What bounds one QEMU process on the host.
enum QEMULimits {
    /// Its file size limit: the console log (which the guest writes as it likes) stops growing here.
    static let fileSizeBytes: UInt64 = 4 << 20
    /// TCG's translated-code cache: QEMU's default is 1 GiB, which the cgroup would have to allow.
    /// Measured (`scripts/bench sandbox`): 512 MiB starts a pod as fast as the default; 128 MiB
    /// costs ~0.2 s of every boot.
    static let tcgCacheMiB = 512
    /// QEMU's own memory beyond the guest's RAM: the code cache (resident once used), device state,
    /// its heap.
    static let overheadMiB = 640
    /// CPU for QEMU's own threads (its main loop, I/O) and virtiofsd beyond the vCPUs, in thousandths
    /// of a CPU: the VM's quota is `vcpus` CPUs plus this.
    static let overheadMilliCPU = 500

    static func cgroup(spec: VMSpec) -> VMCgroup.Limits {
        cgroup(vcpus: spec.vcpus, memoryMiB: spec.memoryMiB)
    }

    static func cgroup(vcpus: Int, memoryMiB: Int) -> VMCgroup.Limits {
        VMCgroup.Limits(
            memoryBytes: UInt64(memoryMiB + overheadMiB) << 20, pids: 512, vcpus: vcpus,
            cpuQuotaMicros: (vcpus * 1000 + overheadMilliCPU) * VMCgroup.Limits.cpuPeriodMicros / 1000)
    }
}

/// /dev/kvm for a VM that runs as its own user: the device's group, given as a supplementary group.
enum KVMDevice {
    static var groups: [UInt32] {
        var info = stat()
        guard stat("/dev/kvm", &info) == 0, info.st_gid != 0, info.st_mode & 0o060 == 0o060 else { return [] }
        return [info.st_gid]
    }
}
