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
        var fds: [Int32] = []
        func fail(_ what: String, _ path: String) -> HypervisorError {
            let reason = String(cString: strerror(errno))
            for fd in fds { Glibc.close(fd) }
            return .bootFailed("\(spec.vmName): cannot open the \(what) \(path): \(reason)")
        }
        func keep(_ fd: Int32) -> Int {
            fds.append(fd)
            return 3 + fds.count - 1
        }
        func path(_ fd: Int32) -> String { "/proc/self/fd/\(keep(fd))" }
        func listening(_ socketPath: String, _ what: String) throws(HypervisorError) -> Int {
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            unlink(socketPath)
            guard fd >= 0, UnixSocketAddress.bind(fd, path: socketPath), listen(fd, 4) == 0 else {
                if fd >= 0 { Glibc.close(fd) }
                throw fail(what, socketPath)
            }
            return keep(fd)
        }
        chmod(spec.runDir, 0o700)
        let readOnly = O_RDONLY | O_CLOEXEC | O_NOFOLLOW
        let kernelFD = Glibc.open(spec.kernel, readOnly)
        guard kernelFD >= 0 else { throw fail("guest kernel", spec.kernel) }
        let kernel = path(kernelFD)
        let initrdFD = Glibc.open(spec.initrd, readOnly)
        guard initrdFD >= 0 else { throw fail("guest initrd", spec.initrd) }
        let initrd = path(initrdFD)
        let agentFD = Glibc.open(spec.agentImage, readOnly)
        guard agentFD >= 0 else { throw fail("agent image", spec.agentImage) }
        let agentImage = path(agentFD)
        // The console log: a fresh file of the VM's user (QEMU opens it again for writing).
        unlink(layout.consoleLog)
        let consoleFD = Glibc.open(layout.consoleLog, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard consoleFD >= 0, fchown(consoleFD, user.uid, user.gid) == 0 else {
            throw fail("console log", layout.consoleLog)
        }
        let console = path(consoleFD)
        var token: String?
        if let tokenFile = spec.agentTokenFile {
            let tokenFD = Glibc.open(tokenFile, readOnly)
            guard tokenFD >= 0, fchown(tokenFD, user.uid, user.gid) == 0, fchmod(tokenFD, 0o400) == 0 else {
                throw fail("agent token", tokenFile)
            }
            token = path(tokenFD)
        }
        let qmp = try listening(layout.qmpSocket, "QMP socket")
        let agent = agentSerial ? try listening(layout.agentSocket, "agent socket") : nil
        var tap: Int?
        var vhost: Int?
        if let nic = spec.nic, nic.tapFD >= 0 {
            let copy = fcntl(nic.tapFD, F_DUPFD_CLOEXEC, 3)
            guard copy >= 0 else { throw fail("pod tap", nic.tapName) }
            tap = keep(copy)
            let vhostFD = Glibc.open("/dev/vhost-net", O_RDWR | O_CLOEXEC)
            if vhostFD >= 0 { vhost = keep(vhostFD) }
        }
        var ram: Int?
        var fsSocketFD: Int?
        switch spec.origin {
        case .boot: break
        case .template(let ramFD), .clone(let ramFD, _):
            let copy = fcntl(ramFD, F_DUPFD_CLOEXEC, 3)
            guard copy >= 0 else { throw fail("template RAM", "memfd") }
            ram = keep(copy)
        }
        if let fsSocket {
            // Guest RAM that virtiofsd can map too (vhost-user), made here at its final size and sealed:
            // QEMU would otherwise create and grow it itself, past its own file size limit.
            let memfd = cocoon_guest_ram(spec.vmName, UInt64(spec.memoryMiB) << 20)
            guard memfd >= 0 else { throw fail("guest RAM", "memfd") }
            ram = keep(memfd)
            let copy = fcntl(fsSocket, F_DUPFD_CLOEXEC, 3)
            guard copy >= 0 else { throw fail("virtiofsd socket", Virtiofsd.socketPath(runDir: spec.runDir)) }
            fsSocketFD = keep(copy)
        }
        let output = Glibc.open(layout.outputLog, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard output >= 0 else { throw fail("output log", layout.outputLog) }
        return QEMUFiles(
            kept: fds, output: output,
            paths: Paths(
                kernel: kernel, initrd: initrd, agentImage: agentImage, console: console, token: token, qmpFD: qmp,
                agentFD: agent, tapFD: tap, vhostFD: vhost, ramFD: ram, fsSocketFD: fsSocketFD))
    }

    func close() {
        for fd in kept { Glibc.close(fd) }
        Glibc.close(output)
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
