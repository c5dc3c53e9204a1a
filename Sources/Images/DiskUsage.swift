import Glibc

/// Bytes (allocated blocks) and inodes used under a directory tree, without following symlinks.
enum DiskUsage {
    static func measure(_ root: String) -> (bytes: UInt64, inodes: UInt64) {
        var bytes: UInt64 = 0
        var inodes: UInt64 = 0
        var seen = Set<UInt64>()  // hard links count once
        func walk(_ path: String) {
            var st = stat()
            guard lstat(path, &st) == 0 else { return }
            if st.st_nlink > 1 && (st.st_mode & S_IFMT) != S_IFDIR {
                guard seen.insert(UInt64(st.st_ino)).inserted else { return }
            }
            inodes += 1
            bytes += UInt64(max(0, st.st_blocks)) * 512
            guard (st.st_mode & S_IFMT) == S_IFDIR, let dir = opendir(path) else { return }
            defer { closedir(dir) }
            while let ent = readdir(dir) {
                let name = withUnsafePointer(to: ent.pointee.d_name) {
                    $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
                }
                if name == "." || name == ".." { continue }
                walk(path + "/" + name)
            }
        }
        walk(root)
        return (bytes, inodes)
    }
}
