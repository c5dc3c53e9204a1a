import Glibc

/// The device nodes a privileged container finds in its /dev, as containerd gives a privileged
/// container the host's devices: every character and block device under this system's /dev (the
/// node's for a native pod, the guest's in a VM), bound over the container's own /dev. Left out:
/// what each container has its own of (pseudo-terminals, shared memory, message queues, the
/// nodes its fresh /dev already holds) and the console.
enum HostDevices {
    static let ownDirectories: Set<String> = ["pts", "shm", "mqueue", "fd"]
    static let ownNodes: Set<String> = ["null", "zero", "full", "random", "urandom", "tty", "ptmx", "console"]
    /// A bound on what is bound: /dev holds a few hundred nodes.
    static let limit = 4096

    /// Paths below `dev` (without it), sorted; directories are followed at most `depth` deep,
    /// symbolic links never.
    static func nodes(under dev: String = "/dev", depth: Int = 3) -> [String] {
        var found: [String] = []
        walk(dev, relative: "", depth: depth, into: &found)
        return found.sorted()
    }

    private static func walk(_ dir: String, relative: String, depth: Int, into found: inout [String]) {
        guard let stream = opendir(dir) else { return }
        defer { closedir(stream) }
        while found.count < limit, let entry = readdir(stream) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) {
                String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard name != ".", name != ".." else { continue }
            let path = dir + "/" + name
            let rel = relative.isEmpty ? name : relative + "/" + name
            var st = stat()
            guard lstat(path, &st) == 0 else { continue }
            switch st.st_mode & S_IFMT {
            case S_IFCHR, S_IFBLK:
                if !(relative.isEmpty && ownNodes.contains(name)) { found.append(rel) }
            case S_IFDIR:
                if depth > 1, !(relative.isEmpty && ownDirectories.contains(name)) {
                    walk(path, relative: rel, depth: depth - 1, into: &found)
                }
            default:
                break
            }
        }
    }
}
