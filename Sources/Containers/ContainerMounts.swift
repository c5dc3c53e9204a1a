import AgentClient
import CSpawn
import Errors
import Foundation

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

    /// O_PATH (a _GNU_SOURCE flag Glibc's module does not export).
    static let oPath: Int32 = 0o10_000_000

    static func copy(_ mounts: [ContainerRecord.MountInfo], forbiddenRoots: [String], limit: Int) throws(CocoonError)
        -> [FileMount]
    {
        var total = 0
        var result: [FileMount] = []
        for (i, m) in mounts.enumerated() {
            guard m.containerPath.hasPrefix("/") else {
                throw .invalidArgument("mounts[\(i)].container_path \"\(m.containerPath)\" must be absolute")
            }
            guard m.hostPath.hasPrefix("/") else {
                throw .invalidArgument("mounts[\(i)].host_path \"\(m.hostPath)\" must be absolute")
            }
            let source = (m.hostPath as NSString).resolvingSymlinksInPath
            for root in forbiddenRoots + ["/proc", "/sys", "/dev"] where source == root || source.hasPrefix(root + "/")
            {
                throw .invalidArgument("mounts[\(i)].host_path \(m.hostPath) is not allowed (inside \(root))")
            }
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: source, isDirectory: &isDir) else {
                throw .notFound("mounts[\(i)].host_path \(m.hostPath) does not exist")
            }
            var mount = FileMount(destination: m.containerPath, readOnly: m.readOnly)
            mount.entries.append(try entry(source, relative: "", total: &total, limit: limit))
            if isDir.boolValue {
                let walker = FileManager.default.enumerator(atPath: source)
                while let rel = walker?.nextObject() as? String {
                    mount.entries.append(try entry(source + "/" + rel, relative: rel, total: &total, limit: limit))
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

    private static func entry(_ path: String, relative: String, total: inout Int, limit: Int) throws(CocoonError)
        -> FileMount.Entry
    {
        var st = stat()
        guard lstat(path, &st) == 0 else { throw .notFound("mount source \(path) vanished while copying") }
        var e = FileMount.Entry(path: relative, mode: st.st_mode)
        switch st.st_mode & S_IFMT {
        case S_IFREG:
            e.data = try read(path, relative: relative, expected: st, total: &total, limit: limit)
        case S_IFLNK:
            do {
                e.data = Data(try FileManager.default.destinationOfSymbolicLink(atPath: path).utf8)
            } catch {
                throw .notFound("mount source \(path) vanished while copying", cause: error)
            }
        case S_IFDIR:
            break
        default:
            e.mode = S_IFREG | 0o644  // sockets, fifos, devices: an empty placeholder, never opened
        }
        return e
    }

    /// A regular file's bytes, read through a descriptor that is the file `lstat` saw: opened without
    /// following a symlink anywhere below the mount's source (a file swapped for a symlink to
    /// /etc/shadow meanwhile is refused), checked to be the same regular file, and read only up to
    /// the size it had (a file growing meanwhile cannot blow the limit).
    static func read(_ path: String, relative: String, expected: stat, total: inout Int, limit: Int)
        throws(CocoonError) -> Data
    {
        let fd: Int32
        if relative.isEmpty {
            fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW)
        } else {
            let base = String(path.dropLast(relative.count + 1))
            let dir = open(base, Self.oPath | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW)
            guard dir >= 0 else { throw .failedPrecondition("cannot open mount source \(base)") }
            defer { close(dir) }
            fd = cocoon_open_beneath(dir, relative)
        }
        guard fd >= 0 else {
            throw .failedPrecondition("mount source \(path) cannot be opened without following a symlink")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG, st.st_ino == expected.st_ino,
            st.st_dev == expected.st_dev
        else {
            throw .failedPrecondition("mount source \(path) changed while it was copied")
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
