import BootContract
import Foundation
import Spawn

/// The files of one QEMU VM, opened by the daemon and handed to QEMU as descriptors: QEMU runs as
/// the VM's own user and could not open them by path (the state root is the daemon's alone). QEMU
/// opens each again through `/proc/self/fd/N`, which checks only the file's own permissions: the
/// guest image is world-readable, the console log and the token belong to the VM's user, and no
/// directory on the way needs to let it in. The run directory (QMP and agent sockets) is the VM
/// user's own, mode 0700.
struct QEMUFiles {
    /// What QEMU's arguments name: descriptor paths.
    struct Paths {
        var kernel: String
        var initrd: String
        var agentImage: String
        var console: String
        var token: String?
    }

    /// Descriptors the VM keeps (as 3, 4, ...), in the order of `paths`.
    let kept: [Int32]
    /// QEMU's stdout and stderr.
    let output: Int32
    let paths: Paths

    static func open(spec: VMSpec, layout: QEMULayout, user: VMUser) throws(HypervisorError) -> QEMUFiles {
        var fds: [Int32] = []
        func fail(_ what: String, _ path: String) -> HypervisorError {
            let reason = String(cString: strerror(errno))
            for fd in fds { Glibc.close(fd) }
            return .bootFailed("\(spec.vmName): cannot open the \(what) \(path): \(reason)")
        }
        func keep(_ fd: Int32) -> String {
            fds.append(fd)
            return VMProcess.Launch.path(ofKept: fds.count - 1)
        }
        // The run directory: the VM user's alone; its parents let it through, nothing more.
        try prepareRunDir(spec.runDir, user: user)
        let readOnly = O_RDONLY | O_CLOEXEC | O_NOFOLLOW
        let kernelFD = Glibc.open(spec.kernel, readOnly)
        guard kernelFD >= 0 else { throw fail("guest kernel", spec.kernel) }
        let kernel = keep(kernelFD)
        let initrdFD = Glibc.open(spec.initrd, readOnly)
        guard initrdFD >= 0 else { throw fail("guest initrd", spec.initrd) }
        let initrd = keep(initrdFD)
        let agentFD = Glibc.open(spec.agentImage, readOnly)
        guard agentFD >= 0 else { throw fail("agent image", spec.agentImage) }
        let agentImage = keep(agentFD)
        // The console log: a fresh file of the VM's user (QEMU opens it again for writing).
        unlink(layout.consoleLog)
        let consoleFD = Glibc.open(layout.consoleLog, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard consoleFD >= 0, fchown(consoleFD, user.uid, user.gid) == 0 else {
            throw fail("console log", layout.consoleLog)
        }
        let console = keep(consoleFD)
        var token: String?
        if let tokenFile = spec.agentTokenFile {
            let tokenFD = Glibc.open(tokenFile, readOnly)
            guard tokenFD >= 0, fchown(tokenFD, user.uid, user.gid) == 0, fchmod(tokenFD, 0o400) == 0 else {
                throw fail("agent token", tokenFile)
            }
            token = keep(tokenFD)
        }
        let output = Glibc.open(layout.outputLog, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard output >= 0 else { throw fail("output log", layout.outputLog) }
        return QEMUFiles(
            kept: fds, output: output,
            paths: Paths(kernel: kernel, initrd: initrd, agentImage: agentImage, console: console, token: token))
    }

    private static func prepareRunDir(_ dir: String, user: VMUser) throws(HypervisorError) {
        // The parents (the daemon's run dir and its vms/): others may pass, not list.
        var parent = (dir as NSString).deletingLastPathComponent
        for _ in 0..<2 where parent.count > 1 {
            chmod(parent, 0o711)
            parent = (parent as NSString).deletingLastPathComponent
        }
        guard chown(dir, user.uid, user.gid) == 0, chmod(dir, 0o700) == 0 else {
            throw .bootFailed(
                "cannot give the VM's run directory \(dir) to uid \(user.uid): \(String(cString: strerror(errno)))")
        }
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
    /// TCG's translated-code cache (QEMU's default is 1 GiB, which the cgroup would have to allow).
    static let tcgCacheMiB = 128
    /// QEMU's own memory beyond the guest's RAM: the code cache, device state, its heap.
    static let overheadMiB = 384

    static func cgroup(spec: VMSpec, accel: Accel) -> VMCgroup.Limits {
        VMCgroup.Limits(
            memoryBytes: UInt64(spec.memoryMiB + overheadMiB) << 20, pids: 512, vcpus: spec.vcpus)
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
