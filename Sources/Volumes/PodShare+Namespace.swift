import CMounts
import Errors
import Foundation
import SystemFiles

/// The pod's mount namespace: made with the share, held by the bind of its nsfs file at
/// `namespacePin` (no process keeps it: it outlives a daemon restart as the pod does), entered by
/// virtiofsd and a native pod's agent when they start and by a short-lived child for each bind.
extension PodShare {
    /// The pin to join, for a process that serves or uses the share (virtiofsd, a native agent);
    /// nil for a pod whose binds are in the host's namespace.
    public var mountNamespace: String? { MountTable.isMountPoint(namespacePin) ? namespacePin : nil }

    /// A pod made by a daemon before pod namespaces: its export is mounted in the host's namespace.
    var hasHostBinds: Bool { MountTable.isMountPoint(exportDir) }

    /// Makes the namespace with the share's mounts in it and pins it. The pins' directory is a
    /// private mount of its own: a pin on a shared mount would propagate (the kernel refuses it).
    func makeNamespace() throws(CocoonError) {
        let pins = (namespacePin as NSString).deletingLastPathComponent
        guard mkdir(pins, 0o700) == 0 || errno == EEXIST else {
            throw .internalError("cannot create the pods' namespace directory \(pins): \(Self.errorText())")
        }
        if !MountTable.isMountPoint(pins) {
            guard mount(pins, pins, nil, UInt(MS_BIND), nil) == 0, mount(nil, pins, nil, UInt(MS_PRIVATE), nil) == 0
            else {
                throw .internalError("cannot make \(pins) a private mount: \(Self.errorText())")
            }
        }
        let rc = cocoon_pod_mount_namespace(namespacePin, mountsDir, exportDir)
        guard rc == 0 else {
            _ = destroy()
            throw .internalError("the pod's mount namespace (\(namespacePin)): \(String(cString: strerror(rc)))")
        }
    }

    /// A descriptor of the pod's namespace for `cocoon_attach_tree` and `cocoon_detach_tree`; -1
    /// for a pod whose binds are in the host's namespace.
    func openNamespace() throws(CocoonError) -> Int32 {
        if hasHostBinds { return -1 }
        guard MountTable.isMountPoint(namespacePin) else {
            throw .failedPrecondition("the pod's mount namespace (\(namespacePin)) is gone")
        }
        let fd = open(namespacePin, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else {
            throw .internalError("cannot open the pod's mount namespace \(namespacePin): \(Self.errorText())")
        }
        return fd
    }

    /// Unpins the namespace: it ends with the last process in it (virtiofsd, the native agent and
    /// its containers are ended before).
    func dropNamespace() {
        var rounds = 0
        while MountTable.isMountPoint(namespacePin), rounds < 16, umount2(namespacePin, Int32(MNT_DETACH)) == 0 {
            rounds += 1
        }
        if !MountTable.isMountPoint(namespacePin) { unlink(namespacePin) }
        // The last pod's: the pins' private mount goes too (a daemon without pods leaves no mount).
        let pins = (namespacePin as NSString).deletingLastPathComponent
        // try?: no directory: nothing to remove
        if (try? FileManager.default.contentsOfDirectory(atPath: pins))?.isEmpty == true {
            while MountTable.isMountPoint(pins), umount2(pins, Int32(MNT_DETACH)) == 0 {}
            rmdir(pins)
        }
    }

    /// True when `path` is a mount in the pod's namespace (the host's, for a pod of an older daemon).
    public func isBound(_ path: String) -> Bool {
        // try?: no namespace: nothing is bound
        guard let namespace = try? openNamespace() else { return false }
        defer { if namespace >= 0 { close(namespace) } }
        return cocoon_is_mount_root(namespace, path) == 1
    }
}
