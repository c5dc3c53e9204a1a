import BootContract
import Foundation
import Models
import Spawn

/// One pod's virtiofsd: QEMU 7.2's C daemon serving the pod's shared directory to the guest over
/// vhost-user. cocoond starts it before QEMU, in the VM's cgroup (its CPU, memory and page cache
/// count against the pod), sandboxed by its own `sandbox=namespace` (new mount, pid and network
/// namespaces, pivot_root into the directory, its seccomp filter) and without CAP_MKNOD (a guest
/// cannot create device nodes on a host volume). It starts in the pod's mount namespace, where the
/// directory's binds are. It ends when QEMU's connection does.
///
/// It runs as root: serving files of every owner needs CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER and
/// setfsuid, and the namespace sandbox needs CAP_SYS_ADMIN; an unprivileged virtiofsd would serve
/// every file as one user.
public enum Virtiofsd {
    static let binary = "/usr/lib/qemu/virtiofsd"

    /// Where a VM's virtiofsd listens (gone once QEMU has connected, for the QEMU backend) and logs.
    static func socketPath(runDir: String) -> String { runDir + "/virtiofs.sock" }
    static func logPath(runDir: String) -> String { runDir + "/virtiofsd.log" }
    /// The most of its messages kept (`CappedLog`).
    static let logLimit = 1 << 20

    /// The started daemon, and the descriptor QEMU gets as its end of the vhost-user socket (nil:
    /// QEMU connects to the socket's path itself, as libvirt's does).
    struct Started {
        var pid: Int32
        var qemuFD: Int32?
    }

    /// Its command line; `source=` names the pod's directory, which is also how it is found again.
    /// Without CAP_FSETID (and with kill-priv), what a guest writes as root cannot leave a setgid
    /// file of a group it is not in on the host, nor keep a set-id bit through a write.
    static func arguments(sharedDir: String, cache: SharedFSCache = .auto) -> [String] {
        [
            binary, "--fd=3", "-o", "source=\(sharedDir)", "-o", "cache=\(cache.rawValue)", "-o", "sandbox=namespace",
            "-o", "no_xattr", "-o", "no_posix_lock", "-o", "no_flock", "-o", "modcaps=-mknod:-setfcap:-fsetid",
            "-o", "killpriv_v2",
            "--rlimit-nofile=65536", "-o", "log_level=warn",
        ]
    }

    /// The marker that identifies the pod's virtiofsd among host processes.
    public static func marker(sharedDir: String) -> String { "source=\(sharedDir)" }

    /// Listens on `socketPath(runDir:)`, starts virtiofsd on it (its messages to `logPath(runDir:)`)
    /// and, with `connect`, connects QEMU's end (virtiofsd accepts it once it runs) and removes the path.
    static func start(
        sharedDir: String, cache: SharedFSCache, runDir: String, cgroupProcs: [String], connect: Bool = true,
        socketOwner: VMUser? = nil, mountNamespace: String? = nil
    ) async throws(HypervisorError) -> Started {
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw .unavailable("\(binary) not found (apt-get install qemu-system-common)")
        }
        let socketPath = socketPath(runDir: runDir)
        let logPath = logPath(runDir: runDir)
        // Capped: what a guest can make virtiofsd say must not fill the host's /run.
        let output: Int32
        do {
            output = try CappedLog.open(logPath, limit: logLimit, cgroupProcs: cgroupProcs).fd
        } catch {
            throw .bootFailed("cannot open \(logPath): \(error)")
        }
        defer { close(output) }
        let listening = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        unlink(socketPath)
        guard listening >= 0, UnixSocketAddress.bind(listening, path: socketPath), listen(listening, 1) == 0 else {
            let reason = String(cString: strerror(errno))
            if listening >= 0 { close(listening) }
            throw .bootFailed("virtiofsd socket \(socketPath): \(reason)")
        }
        defer { close(listening) }
        // A QEMU that connects by path (libvirt's) as the VM's user: the socket is that user's alone.
        if let owner = socketOwner, chown(socketPath, owner.uid, owner.gid) != 0 || chmod(socketPath, 0o600) != 0 {
            throw .bootFailed("virtiofsd socket \(socketPath): \(String(cString: strerror(errno)))")
        }
        let pid: Int32
        do {
            var launch = VMProcess.Launch(
                uid: 0, gid: 0, keep: [listening], output: output, cgroupProcs: cgroupProcs, ignoreSIGPIPE: true)
            launch.mountNamespace = mountNamespace
            pid = try VMProcess.start(arguments(sharedDir: sharedDir, cache: cache), launch)
        } catch {
            throw .bootFailed("cannot start \(binary): \(error)")
        }
        guard connect else { return Started(pid: pid, qemuFD: nil) }
        let client = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard client >= 0, UnixSocketAddress.connect(client, path: socketPath) else {
            let reason = String(cString: strerror(errno))
            if client >= 0 { close(client) }
            await abandon(pid)
            throw .bootFailed("cannot connect to virtiofsd at \(socketPath): \(reason)")
        }
        unlink(socketPath)  // connected: nobody else may connect to it
        return Started(pid: pid, qemuFD: client)
    }

    /// Kills a virtiofsd this daemon just started (a boot that failed) and reaps it.
    static func abandon(_ pid: Int32) async { await HostProcess.killAndReap(pid) }

    /// Ends a VM's virtiofsd: it ends by itself once QEMU's connection closes; one that does not is
    /// killed (with it, the child it runs in its own namespaces).
    static func end(_ vm: VMHandle) async {
        guard let pid = vm.fsDaemonPid, let dir = vm.sharedDir else { return }
        let marker = marker(sharedDir: dir)
        if !(await HostProcess.waitGone(pid: pid, marker: marker, timeout: .seconds(2))) {
            kill(pid, SIGKILL)
            _ = await HostProcess.waitGone(pid: pid, marker: marker, timeout: .seconds(5))
        }
    }
}
