import CNetns
import Foundation
import SystemFiles

/// A pod's named network namespace, `/var/run/netns/<name>`, as `ip netns add` makes it: a file
/// the namespace is bind-mounted on, under a shared mount of the directory.
public enum NetworkNamespace {
    public static let directory = "/var/run/netns"

    public static func path(name: String) -> String { directory + "/" + name }

    /// Creates it; an existing one of that name is an error (names are per pod).
    public static func create(name: String) throws(CNIError) {
        let path = path(name: name)
        try prepareDirectory()
        let fd = Glibc.open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o444)
        guard fd >= 0 else { throw .wiring("network namespace \(path): \(String(cString: strerror(errno)))") }
        close(fd)
        let rc = cocoon_netns_create(path)
        guard rc == 0 else {
            unlink(path)
            throw .wiring("network namespace \(path): \(String(cString: strerror(rc)))")
        }
    }

    /// Unmounts and deletes it; gone already is fine.
    public static func remove(name: String) {
        let path = path(name: name)
        _ = umount2(path, Int32(MNT_DETACH))
        unlink(path)
    }

    public static func exists(name: String) -> Bool {
        // A namespace file is an nsfs mount; a bare file left by a crash is not one.
        cocoon_is_nsfs(path(name: name)) == 1
    }

    /// Opens it for setns (the caller closes the descriptor).
    static func openFD(name: String) throws(CNIError) -> Int32 {
        let fd = Glibc.open(path(name: name), O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw .wiring("network namespace \(path(name: name)): \(String(cString: strerror(errno)))")
        }
        return fd
    }

    /// `ip netns` makes the directory a shared mount of its own, so that namespaces mounted there
    /// later show in every mount namespace that sees it.
    private static func prepareDirectory() throws(CNIError) {
        // (Under the daemon's umask: made 0755 explicitly, as `ip netns` makes it.)
        if mkdir("/var/run", 0o755) == 0 { chmod("/var/run", 0o755) }
        if mkdir(directory, 0o755) == 0 { chmod(directory, 0o755) }
        if !isMountPoint(directory) {
            guard mount(directory, directory, "none", UInt(MS_BIND | MS_REC), nil) == 0 else {
                throw .wiring("bind \(directory): \(String(cString: strerror(errno)))")
            }
        }
        _ = mount("none", directory, nil, UInt(MS_SHARED | MS_REC), nil)
    }

    private static func isMountPoint(_ path: String) -> Bool {
        guard let real = realpath(path, nil) else { return false }
        defer { free(real) }
        return MountTable.isMountPoint(String(cString: real))
    }
}
