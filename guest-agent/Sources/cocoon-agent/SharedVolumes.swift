import AgentAPI
import AgentService
import BootContract
import ContainerCore
import Glibc
import SystemFiles

/// The pod's shared directory in the guest: the host's virtio-fs export, mounted once when the pod
/// is configured; each container's volumes are binds of its entries.
enum SharedVolumes {
    /// A VM's virtio-fs mount point; a native pod's shared directory itself (cocoond's bind mount).
    static var base: String { HostMode.current?.sharedDir ?? BootContract.sharedFSGuestPath }

    /// Mounts the virtio-fs export with `tag` (idempotent).
    static func mount(tag: String) throws(AgentFailure) {
        guard !tag.isEmpty, tag.utf8.count <= 36, tag.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }) else {
            throw .invalid("shared filesystem tag \"\(tag)\" is not valid")
        }
        if isMounted() { return }
        if HostMode.current != nil { throw .precondition("the pod's shared directory \(base) is not mounted") }
        ModuleLoader.loadSet("shared")
        mkdirs(base)
        guard Glibc.mount(tag, base, "virtiofs", 0, nil) == 0 else {
            throw .internal("mount the pod's shared directory (virtio-fs \(tag)): \(SystemError("mount"))")
        }
        widenReadahead()
    }

    /// Sequential reads come in readahead-sized requests, each a round trip to virtiofsd: 128 KiB
    /// (the default) reads 1 GiB in ~8000 of them. 4 MiB lets the kernel send the largest requests
    /// the device takes.
    private static func widenReadahead() {
        var st = stat()
        guard stat(base, &st) == 0 else { return }
        let dev = UInt64(st.st_dev)
        let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & ~0xfff)
        let minor = (dev & 0xff) | ((dev >> 12) & ~0xff)
        let device = "\(major):\(minor)"
        if FileText.write("4096", to: "/sys/class/bdi/\(device)/read_ahead_kb") != 0 {
            log("readahead of the shared directory (bdi \(device)) not set: \(SystemError("write"))")
        }
    }

    /// A container's volume: `base/<name>` bound at the destination; device nodes on it cannot be
    /// opened unless the container is privileged.
    static func mount(for shared: Cocoon_Agent_V4_SharedMount, privileged: Bool) throws(AgentFailure) -> Mount {
        let name = shared.name
        guard !name.isEmpty, name.utf8.count <= 64, name != ".", name != "..",
            name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" })
        else {
            throw .invalid("shared mount name \"\(name)\" is not one path component")
        }
        guard shared.destination.hasPrefix("/") else {
            throw .invalid("mount destination \"\(shared.destination)\" must be absolute")
        }
        guard isMounted() else { throw .precondition("the pod has no shared directory for volume \(name)") }
        let source = base + "/" + name
        var st = stat()
        guard lstat(source, &st) == 0, st.st_mode & S_IFMT == S_IFDIR || st.st_mode & S_IFMT == S_IFREG else {
            throw .notFound("volume \(name) is not in the pod's shared directory")
        }
        return Mount(
            source: source, destination: shared.destination, readOnly: shared.readOnly,
            flags: privileged ? 0 : UInt(MS_NODEV))
    }

    private static func isMounted() -> Bool {
        MountTable.isMountPoint(base)
    }
}
