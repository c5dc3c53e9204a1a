import AgentClient
import Errors
import Foundation

/// Turns a container's host mounts (the kubelet's /etc/hosts, resolv.conf, volumes, secrets) into
/// trees the agent recreates inside the VM (no shared filesystem here). Refuses sources that do not
/// exist, sources inside the daemon's own state or the host's /proc, /sys and /dev, and trees too big
/// to copy.
enum ContainerMounts {
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
            total += Int(st.st_size)
            guard total <= limit else {
                throw .invalidArgument("mount sources exceed \(limit >> 20) MiB; Cocoon copies mounts into the VM")
            }
            guard let data = FileManager.default.contents(atPath: path) else {
                throw .failedPrecondition("cannot read mount source \(path)")
            }
            e.data = data
        case S_IFLNK:
            do {
                e.data = Data(try FileManager.default.destinationOfSymbolicLink(atPath: path).utf8)
            } catch {
                throw .notFound("mount source \(path) vanished while copying", cause: error)
            }
        case S_IFDIR:
            break
        default:
            e.mode = S_IFREG | 0o644  // sockets, fifos, devices: an empty placeholder
        }
        return e
    }
}
