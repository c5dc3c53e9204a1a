import AgentService
import CAgentSys
import Glibc

/// The image disks the host hot-plugs onto the VM's SCSI bus: found by serial (VPD page 0x80, no
/// udev needed), mounted read-only once per pod under /run/cocoon/images/<serial>, unmounted when
/// the host asks (before it unplugs the disk).
struct DiskMounts {
    private var mounted: [String: String] = [:]
    private var modulesLoaded = false

    /// Mounts the disk with `serial` (waiting for it to appear) and returns the mount point.
    mutating func mount(serial: String, fstype: String = "erofs") throws(AgentFailure) -> String {
        if let path = mounted[serial] { return path }
        guard !serial.isEmpty, serial.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }) else {
            throw .invalid("disk serial \"\(serial)\" is not valid")
        }
        if HostMode.current != nil {
            // A native pod: cocoond linked the image's unpacked tree under this serial.
            guard let tree = DiskMounts.linkedTree(HostMode.runDir + "/images/" + serial) else {
                throw .notFound("image \(serial) is not linked for this pod")
            }
            mounted[serial] = tree
            return tree
        }
        if !modulesLoaded {
            ModuleLoader.loadSet("disks")
            modulesLoaded = true
        }
        // The disk shows in sysfs (with its serial) a moment before it can be opened: until the
        // kernel has finished adding it, opening it fails with ENXIO, and a disk of the same serial
        // that was just unplugged can still be listed. Look it up again and retry until it mounts.
        let target = "/run/cocoon/images/\(serial)"
        mkdirs(target)
        let deadline = cocoon_boottime_ns() + 20_000_000_000
        var lastError = "no disk with serial \(serial) appeared in the guest"
        while true {
            if let device = DiskMounts.findDevice(serial: serial), DiskMounts.sectors(device) > 0 {
                if Glibc.mount("/dev/\(device)", target, fstype, UInt(MS_RDONLY | MS_NODEV | MS_NOSUID), nil) == 0 {
                    break
                }
                let error = SystemError("mount")
                lastError = "mount /dev/\(device) (\(serial)) as \(fstype): \(error)"
                guard [ENXIO, ENOENT, ENODEV, ENOMEDIUM].contains(error.code) else { throw .internal(lastError) }
            }
            guard cocoon_boottime_ns() < deadline else { throw .notFound("\(lastError) within 20 s") }
            usleep(10_000)
        }
        mounted[serial] = target
        return target
    }

    mutating func unmount(serial: String) throws(AgentFailure) {
        guard let path = mounted[serial] else { return }
        if HostMode.current != nil {
            mounted[serial] = nil
            return
        }
        if umount2(path, 0) != 0 && errno != EINVAL && errno != ENOENT {
            throw .precondition("unmount image disk \(serial): \(SystemError("umount"))")
        }
        rmdir(path)
        mounted[serial] = nil
    }

    /// The size of a block device in 512-byte sectors (0 while the kernel is still adding it).
    static func sectors(_ device: String) -> Int {
        Int(readSmallFile("/sys/block/\(device)/size", limit: 64)?.trimmingCharacters(in: " \n") ?? "") ?? 0
    }

    /// The block device (e.g. "sdb") whose SCSI serial is `serial`.
    static func findDevice(serial: String) -> String? {
        for name in directoryEntries("/sys/block") ?? [] where name.hasPrefix("sd") {
            guard let page = readSmallBytes("/sys/block/\(name)/device/vpd_pg80", limit: 512), page.count > 4 else {
                continue
            }
            let found = String(decoding: page.dropFirst(4).prefix { $0 != 0 }, as: UTF8.self).trimmingCharacters(
                in: " ")
            if found == serial { return name }
        }
        return nil
    }
}

/// mkdir -p.
extension DiskMounts {
    /// The directory a link made by cocoond points to (nil: no link, or not a directory).
    static func linkedTree(_ link: String) -> String? {
        guard let resolved = realpath(link, nil) else { return nil }
        defer { free(resolved) }
        var st = stat()
        let path = String(cString: resolved)
        guard stat(path, &st) == 0, st.st_mode & S_IFMT == S_IFDIR else { return nil }
        return path
    }
}

func mkdirs(_ path: String, mode: mode_t = 0o755) {
    var prefix = ""
    for component in path.split(separator: "/") {
        prefix += "/" + component
        mkdir(prefix, mode)
    }
}
