import CAgentSys
import ContainerCore
import Glibc
import SystemFiles

/// What PID 1 owns in the guest: the base mounts and the final power-off.
enum GuestSetup {
    static func mountBaseFilesystems() {
        let mounts: [(String, String, String, UInt, String?)] = [
            ("proc", "/proc", "proc", UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC), nil),
            ("sysfs", "/sys", "sysfs", UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC), nil),
            ("devtmpfs", "/dev", "devtmpfs", UInt(MS_NOSUID), "mode=0755"),
            ("tmpfs", "/run", "tmpfs", UInt(MS_NOSUID | MS_NODEV), "mode=0755"),
            ("cgroup2", "/sys/fs/cgroup", "cgroup2", UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC), nil),
        ]
        for (source, target, type, flags, data) in mounts {
            if target == "/proc" && access("/proc/self/stat", F_OK) == 0 { continue }  // mounted by /init
            mkdir(target, 0o755)
            let rc: Int32
            if let data {
                rc = data.withCString { mount(source, target, type, flags, $0) }
            } else {
                rc = mount(source, target, type, flags, nil)
            }
            if rc != 0 && errno != EBUSY {
                log("mount \(target): \(SystemError("mount"))")
            }
        }
        for dir in ["/dev/pts", "/dev/shm"] { mkdir(dir, 0o755) }
        _ = mount("devpts", "/dev/pts", "devpts", UInt(MS_NOSUID | MS_NOEXEC), "newinstance,ptmxmode=0666")
        _ = mount("shm", "/dev/shm", "tmpfs", UInt(MS_NOSUID | MS_NODEV), "mode=1777")
        if cocoon_loopback_up() != 0 { log("loopback: \(SystemError("ioctl"))") }
        enableModuleAutoload()
    }

    /// The agent disk carries every module of the guest kernel and busybox's modprobe: point the
    /// kernel's module loader at them, so what a pod needs (bridge, veth, vxlan, nf_tables, ...) loads
    /// on demand, as on a host.
    static func enableModuleAutoload() {
        let modprobe = "/opt/cocoon/sbin/modprobe"
        guard access(modprobe, X_OK) == 0 else { return }  // an older guest image without modules
        // The initramfs has its own /lib/modules (the few boot modules); the full tree (same files
        // and more, with modules.dep and modules.alias) goes over it.
        mkdirs("/lib/modules")
        guard mount("/opt/cocoon/modules", "/lib/modules", nil, UInt(MS_BIND), nil) == 0 else {
            return log("bind the module tree on /lib/modules: \(SystemError("mount"))")
        }
        let code = FileText.write(modprobe, to: "/proc/sys/kernel/modprobe")
        if code != 0 { log("kernel.modprobe: \(SystemError("write", code))") }
    }

    /// Stops every other process, flushes, and powers the VM off. Never returns.
    static func powerOff() -> Never {
        if HostMode.current != nil {
            // Never kill(-1) on the host: cocoond ends the pod's processes through its cgroup.
            log("native pod agent ending")
            exit(0)
        }
        log("powering off")
        kill(-1, SIGTERM)
        usleep(100_000)
        kill(-1, SIGKILL)
        sync()
        if getpid() == 1 {
            _ = cocoon_poweroff()
        }
        exit(0)
    }
}
