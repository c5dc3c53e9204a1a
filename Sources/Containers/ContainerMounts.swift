import AgentClient
import CSpawn
import Errors
import Foundation
import Volumes

/// Turns a container's host mounts (the kubelet's /etc/hosts, resolv.conf, volumes, secrets) into
/// trees the agent recreates inside the VM, for a pod whose handler has `shared_fs = "none"`:
/// copies, never updated. Refuses sources that do not
/// exist, sources inside the daemon's own state or the host's /proc, /sys and /dev, and trees too big
/// to copy.
enum ContainerMounts {
    /// `copy`, off the caller's actor: reading up to the limit from disk must not hold up other calls.
    @concurrent
    static func copyOffActor(_ mounts: [ContainerRecord.MountInfo], forbiddenRoots: [String], limit: Int)
        async throws(CocoonError) -> [FileMount]
    {
        try copy(mounts, forbiddenRoots: forbiddenRoots, limit: limit)
    }

    static func copy(_ mounts: [ContainerRecord.MountInfo], forbiddenRoots: [String], limit: Int) throws(CocoonError)
        -> [FileMount]
    {
        var total = 0
        var result: [FileMount] = []
        for (i, m) in mounts.enumerated() {
            guard m.containerPath.hasPrefix("/") else {
                throw .invalidArgument("mounts[\(i)].container_path \"\(m.containerPath)\" must be absolute")
            }
            // Opened once, checked by what the kernel says the descriptor is; everything copied is
            // opened beneath it.
            let source = try VolumeSource(
                m.hostPath, field: "mounts[\(i)].host_path", forbidden: forbiddenRoots, followLast: true)
            var mount = FileMount(destination: m.containerPath, readOnly: m.readOnly)
            mount.entries.append(try entry(source, relative: "", total: &total, limit: limit))
            if source.isDirectory {
                let walker = FileManager.default.enumerator(atPath: source.path)
                while let rel = walker?.nextObject() as? String {
                    mount.entries.append(try entry(source, relative: rel, total: &total, limit: limit))
                    guard mount.entries.count < 100_000 else {
                        throw .invalidArgument(
                            "mounts[\(i)].host_path \(m.hostPath) has too many files to copy into the VM")
                    }
                }
            }
            result.append(mount)
        }
        return result
    }

    /// One entry of the tree under `source` (`relative` empty: the source itself), examined through
    /// the source's descriptor, never by a path that could be swapped.
    private static func entry(
        _ source: borrowing VolumeSource, relative: String, total: inout Int, limit: Int
    ) throws(CocoonError) -> FileMount.Entry {
        let shown = relative.isEmpty ? source.path : source.path + "/" + relative
        var st = stat()
        let examined =
            relative.isEmpty ? fstat(source.fd, &st) : fstatat(source.fd, relative, &st, AT_SYMLINK_NOFOLLOW)
        guard examined == 0 else { throw .notFound("mount source \(shown) vanished while copying") }
        var e = FileMount.Entry(path: relative, mode: st.st_mode)
        switch st.st_mode & S_IFMT {
        case S_IFREG:
            e.data = try read(source, relative: relative, expected: st, total: &total, limit: limit)
        case S_IFLNK:
            var target = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            let n = readlinkat(source.fd, relative, &target, target.count - 1)
            guard n >= 0 else { throw .notFound("mount source \(shown) vanished while copying") }
            e.data = Data(target[0..<n].map { UInt8(bitPattern: $0) })
        case S_IFDIR:
            break
        default:
            e.mode = S_IFREG | 0o644  // sockets, fifos, devices: an empty placeholder, never opened
        }
        return e
    }

    /// A regular file's bytes, read through a descriptor that is the file `fstatat` saw: opened
    /// beneath the source's descriptor without following any symlink (a file swapped for a symlink
    /// to /etc/shadow meanwhile is refused), checked to be the same regular file, and read only up
    /// to the size it had (a file growing meanwhile cannot blow the limit).
    static func read(
        _ source: borrowing VolumeSource, relative: String, expected: stat, total: inout Int, limit: Int
    ) throws(CocoonError) -> Data {
        let shown = relative.isEmpty ? source.path : source.path + "/" + relative
        // The source itself is reopened through its own descriptor (readable this time).
        let fd =
            relative.isEmpty
            ? open("/proc/self/fd/\(source.fd)", O_RDONLY | O_CLOEXEC | O_NONBLOCK)
            : cocoon_open_beneath(source.fd, relative)
        guard fd >= 0 else {
            throw .failedPrecondition("mount source \(shown) cannot be opened without following a symlink")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG, st.st_ino == expected.st_ino,
            st.st_dev == expected.st_dev
        else {
            throw .failedPrecondition("mount source \(shown) changed while it was copied")
        }
        let size = Int(st.st_size)
        total += size
        guard total <= limit else {
            throw .invalidArgument("mount sources exceed \(limit >> 20) MiB; Cocoon copies mounts into the VM")
        }
        var data = Data(count: size)
        var got = 0
        while got < size {
            let n = data.withUnsafeMutableBytes { raw -> Int in
                guard let base = raw.baseAddress else { return -1 }
                return pread(fd, base + got, size - got, off_t(got))
            }
            if n <= 0 { break }
            got += n
        }
        data.count = got  // a file that shrank meanwhile: what was there
        return data
    }
}
