import AgentClient
import CMounts
import Crypto
import Errors
import Foundation
import SystemFiles

/// One pod's shared directory: the tree its virtiofsd exports to the VM (or its native agent binds
/// from), and the bind mounts of its containers' volumes in it (Kata's layout), all of them in a
/// mount namespace of the pod's own (`PodShare+Namespace`): the host's holds none of them, so none
/// keeps a host directory busy (the kubelet's volume teardown unmounts and removes directories
/// under a pod's hostPath volumes while the pod runs).
///
/// - `<root>/mounts` is a shared mount of its own; each volume is bound at `mounts/<name>`.
/// - `<root>/export` is a read-only slave of it: virtiofsd serves it, so the guest sees every volume
///   (each with its own read-only setting) but can create nothing beside them.
/// - `<root>/users/<name>/<container>`: which containers use each bind (empty files).
/// - `namespacePin` (`<run>/podns/<id>`): the bind of the namespace's nsfs file that holds it.
///
/// A volume is cloned from its source as a detached mount (in the host's namespace, where the
/// source is), made nosuid and nodev (a guest never reaches a host device through a volume),
/// read-only as asked and slave or private, and only then attached in the pod's namespace, so
/// nobody ever sees it writable. Containers of the pod that mount the same source with the same
/// settings share one bind: in the guest they are the same inodes, so a file one container creates
/// in an emptyDir is there at once for the other (separate binds would be separate FUSE inodes, and
/// the other's cached "no such file" would last the entry timeout). Releasing a container unbinds
/// what nobody else uses; the pod's stop drops the namespace and removes the tree. Nothing here
/// ever deletes recursively.
///
/// A pod made by a daemon before pod namespaces has its binds in the host's namespace (its export
/// is mounted there): its share goes on that way until the pod ends.
public struct PodShare: Sendable {
    public let root: String
    var mountsDir: String { root + "/mounts" }
    var usersDir: String { root + "/users" }
    /// What virtiofsd exports.
    public var exportDir: String { root + "/export" }

    /// The bind of the pod's mount namespace's nsfs file: `<run>/podns/<id>` beside `<run>/shared/<id>`.
    public let namespacePin: String

    public init(root: String) {
        self.root = root
        let shared = (root as NSString).deletingLastPathComponent
        namespacePin =
            (shared as NSString).deletingLastPathComponent + "/podns/" + (root as NSString).lastPathComponent
    }

    /// The host kernel has mount_setattr (Linux 5.12), which makes a bind recursively read-only;
    /// without it no volume is shared (`bind` refuses).
    public static var recursiveReadOnlyAvailable: Bool { cocoon_has_mount_setattr() == 1 }

    /// The name of the bind of `source` with `volume`'s settings: the same for every container of
    /// the pod that asks for the same thing.
    static func name(_ source: borrowing VolumeSource, _ volume: VolumeRequest) -> String {
        let key = [
            source.path, String(source.device), String(source.inode), String(volume.readOnly),
            String(volume.recursiveReadOnly), volume.propagation.rawValue,
        ].joined(separator: "\0")
        return "v" + SHA256.hash(data: Data(key.utf8)).prefix(12).map { String(format: "%02x", $0) }.joined()
    }

    /// Creates the tree (idempotent: a tree already mounted is kept).
    public func create() throws(CocoonError) {
        do {
            try FileManager.default.createDirectory(
                atPath: (root as NSString).deletingLastPathComponent, withIntermediateDirectories: true,
                attributes: [.posixPermissions: 0o700])
        } catch {
            throw .internalError("cannot create the pods' shared directories under \(root): \(error)")
        }
        for dir in [root, mountsDir, exportDir, usersDir] {
            if mkdir(dir, 0o700) != 0, errno != EEXIST {
                throw .internalError("cannot create the pod's shared directory \(dir): \(Self.errorText())")
            }
        }
        chmod(root, 0o700)
        guard !hasHostBinds, !MountTable.isMountPoint(namespacePin) else { return }
        try makeNamespace()
    }

    /// Binds `volume` into the tree for container `user` (or finds the bind another container of
    /// the pod already uses) and says how the guest mounts it. `field` names the CRI field in
    /// errors; `forbidden` are roots no volume may be in or contain.
    public func bind(_ volume: VolumeRequest, user: String, field: String, forbidden: [String])
        throws(CocoonError) -> SharedMount
    {
        guard cocoon_has_mount_setattr() == 1 else {
            throw .failedPrecondition("the host kernel lacks mount_setattr (Linux 5.12): volumes cannot be shared")
        }
        // The CRI client is trusted: a host path that is a symlink is resolved once, here, as
        // containerd does; what it names is then held by descriptor and checked.
        let source = try VolumeSource(volume.hostPath, field: field, forbidden: forbidden, followLast: true)
        let name = Self.name(source, volume)
        let target = mountsDir + "/" + name
        try addUser(user, of: name)
        do throws(CocoonError) {
            try attach(source, volume, at: target, field: field)
        } catch {
            removeUser(user, of: name)
            throw error
        }
        // The guest makes its bind read-only only when nothing below is writable on the host (a
        // non-recursive read-only volume keeps writable submounts writable).
        let whollyReadOnly =
            volume.readOnly && (volume.recursiveReadOnly || MountTable.mountPoints(below: source.path).isEmpty)
        return SharedMount(name: name, destination: volume.containerPath, readOnly: whollyReadOnly)
    }

    /// Releases container `user`'s volumes: a bind no other container uses is unbound.
    public func release(user: String) {
        let me = String(user.prefix(16))
        // try?: no tree: nothing bound
        for name in (try? FileManager.default.contentsOfDirectory(atPath: usersDir)) ?? [] {
            unlink(usersDir + "/" + name + "/" + me)
            if rmdir(usersDir + "/" + name) == 0 { detach(mountsDir + "/" + name) }
        }
    }

    private func addUser(_ user: String, of name: String) throws(CocoonError) {
        let dir = usersDir + "/" + name
        guard mkdir(dir, 0o700) == 0 || errno == EEXIST else {
            throw .internalError("cannot record the volume's user in \(dir): \(Self.errorText())")
        }
        let fd = open(dir + "/" + String(user.prefix(16)), O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw .internalError("cannot record the volume's user in \(dir): \(Self.errorText())") }
        close(fd)
    }

    private func removeUser(_ user: String, of name: String) {
        unlink(usersDir + "/" + name + "/" + String(user.prefix(16)))
        rmdir(usersDir + "/" + name)
    }

    /// Clones the source as a detached, flagged tree and attaches it on `target` in the pod's
    /// namespace, unless another container's bind of the same thing is there already.
    private func attach(_ source: borrowing VolumeSource, _ volume: VolumeRequest, at target: String, field: String)
        throws(CocoonError)
    {
        let tree = cocoon_volume_tree(
            source.fd, volume.readOnly ? 1 : 0, volume.recursiveReadOnly ? 1 : 0,
            Int32(volume.propagation == .hostToContainer ? 1 : 0))
        guard tree >= 0 else {
            throw .internalError("bind \(field) \(volume.hostPath) into the pod: \(String(cString: strerror(-tree)))")
        }
        defer { close(tree) }  // dissolved unless attached
        let namespace = try openNamespace()
        defer { if namespace >= 0 { close(namespace) } }
        let rc = cocoon_attach_tree(namespace, tree, target, source.isDirectory ? 1 : 0)
        guard rc == 0 || rc == EEXIST else {
            throw .internalError("bind \(field) \(volume.hostPath) into the pod: \(String(cString: strerror(rc)))")
        }
    }

    /// Drops the pod's namespace (its binds go with it once no process is left in it), unbinds what
    /// a pod of an older daemon has in the host's, and removes the tree. True when nothing is left.
    @discardableResult
    public func destroy() -> Bool {
        for point in MountTable.mountPoints(below: root) + [exportDir, mountsDir] {
            while MountTable.isMountPoint(point), umount2(point, Int32(MNT_DETACH)) == 0 {}
        }
        dropNamespace()
        // Each mount point is removed on the host: in a namespace that still lives (a process of
        // the pod's not yet gone), what is mounted on it is detached with it.
        // try?: no tree: nothing to remove
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: mountsDir)) ?? [] {
            removeMountPoint(mountsDir + "/" + entry)
        }
        // try?: no record of users: nothing to remove (the files are ours, one level deep)
        for name in (try? FileManager.default.contentsOfDirectory(atPath: usersDir)) ?? [] {
            for user in (try? FileManager.default.contentsOfDirectory(atPath: usersDir + "/" + name)) ?? [] {
                unlink(usersDir + "/" + name + "/" + user)
            }
            rmdir(usersDir + "/" + name)
        }
        for dir in [mountsDir, exportDir, usersDir, root] { rmdir(dir) }
        return !FileManager.default.fileExists(atPath: root) && !FileManager.default.fileExists(atPath: namespacePin)
    }

    /// Detaches whatever is mounted on `target` in the pod's namespace and removes the mount point.
    private func detach(_ target: String) {
        // try?: no namespace any more (its pin is gone): removing the mount point detaches the rest
        guard let namespace = try? openNamespace() else { return removeMountPoint(target) }
        defer { if namespace >= 0 { close(namespace) } }
        _ = cocoon_detach_tree(namespace, target)
    }

    /// Removes an empty directory or a file that is no longer a mount point here: never anything below.
    func removeMountPoint(_ path: String) {
        guard !MountTable.isMountPoint(path) else { return }
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        if st.st_mode & S_IFMT == S_IFDIR { rmdir(path) } else { unlink(path) }
    }

    static func errorText() -> String { String(cString: strerror(errno)) }
}
