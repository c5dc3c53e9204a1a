import Glibc

/// Resolves a path inside a root filesystem the way the container will see it: symlinks are
/// followed as if `root` were `/`, and `..` never climbs above it. A hostile image cannot point a
/// mount target or /etc/passwd at a file of the host (or the guest).
public enum SafePath {
    public static func resolve(root: String, _ path: String) throws(ContainerCoreError) -> String {
        var pending = path.split(separator: "/").map(String.init).reversed() as [String]
        var resolved: [String] = []
        var links = 0
        while let component = pending.popLast() {
            if component == "." || component.isEmpty { continue }
            if component == ".." {
                _ = resolved.popLast()
                continue
            }
            let candidate = join(root, resolved + [component])
            var st = stat()
            if lstat(candidate, &st) == 0, (st.st_mode & S_IFMT) == S_IFLNK {
                links += 1
                guard links <= 40 else {
                    throw .invalidSpec("\(path): too many levels of symbolic links in the root filesystem")
                }
                var buffer = [CChar](repeating: 0, count: 4096)
                let n = readlink(candidate, &buffer, buffer.count - 1)
                guard n >= 0 else { throw .errno("readlink \(candidate)") }
                let target = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
                if target.hasPrefix("/") { resolved = [] }
                pending.append(contentsOf: target.split(separator: "/").map(String.init).reversed())
                continue
            }
            resolved.append(component)
        }
        return join(root, resolved)
    }

    static func join(_ root: String, _ components: [String]) -> String {
        let base = root.hasSuffix("/") ? String(root.dropLast()) : root
        return components.isEmpty ? (base.isEmpty ? "/" : base) : base + "/" + components.joined(separator: "/")
    }

    /// Creates a directory and its parents, each resolved safely inside `root`.
    public static func makeDirectories(root: String, _ path: String, mode: mode_t = 0o755) throws(ContainerCoreError)
        -> String
    {
        var prefix = ""
        var last = root
        for component in path.split(separator: "/") {
            prefix += "/" + component
            last = try resolve(root: root, prefix)
            if mkdir(last, mode) != 0 && errno != EEXIST { throw .errno("mkdir \(last)") }
        }
        return last
    }

    /// Creates an empty file (a bind-mount target for a file), its parents safely inside `root`.
    public static func makeFile(root: String, _ path: String) throws(ContainerCoreError) -> String {
        let parent = path.split(separator: "/").dropLast().joined(separator: "/")
        _ = try makeDirectories(root: root, "/" + parent)
        let target = try resolve(root: root, path)
        let fd = open(target, O_CREAT | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0o644)
        if fd < 0 && errno != EISDIR { throw .errno("create \(target)") }
        if fd >= 0 { close(fd) }
        return target
    }
}
