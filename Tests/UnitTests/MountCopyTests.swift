import Errors
import Foundation
import Testing

@testable import Containers
@testable import Volumes

/// Copying a container's host mounts reads what the kubelet named and nothing else: a file swapped
/// for a symlink (or for another file) between the look and the read is refused, FIFOs are never
/// opened, and a file is read only up to the size it had.
@Suite struct MountCopyTests {
    func scratch() throws -> String {
        let dir = NSTemporaryDirectory() + "mounts-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir + "/vol", withIntermediateDirectories: true)
        return dir
    }

    @Test func aFileSwappedForASymlinkIsNotFollowed() throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "config".write(toFile: dir + "/vol/app.conf", atomically: true, encoding: .utf8)
        var seen = stat()
        #expect(lstat(dir + "/vol/app.conf", &seen) == 0)
        // The swap: what was a regular file is now a link to a host secret.
        try FileManager.default.removeItem(atPath: dir + "/vol/app.conf")
        try FileManager.default.createSymbolicLink(atPath: dir + "/vol/app.conf", withDestinationPath: "/etc/passwd")
        var total = 0
        let vol = try VolumeSource(dir + "/vol", field: "test", forbidden: [])
        let error = #expect(throws: CocoonError.self) {
            _ = try ContainerMounts.read(vol, relative: "app.conf", expected: seen, total: &total, limit: 1 << 20)
        }
        #expect(error?.message.contains("without following a symlink") == true, "\(String(describing: error))")
        // A symlinked directory on the way is refused too.
        try FileManager.default.createDirectory(atPath: dir + "/elsewhere", withIntermediateDirectories: true)
        try "x".write(toFile: dir + "/elsewhere/f", atomically: true, encoding: .utf8)
        try FileManager.default.createSymbolicLink(atPath: dir + "/vol/sub", withDestinationPath: dir + "/elsewhere")
        var other = stat()
        #expect(lstat(dir + "/elsewhere/f", &other) == 0)
        #expect(throws: CocoonError.self) {
            _ = try ContainerMounts.read(vol, relative: "sub/f", expected: other, total: &total, limit: 1 << 20)
        }
    }

    @Test func aFileReplacedByAnotherIsRefusedAndFIFOsAreNeverOpened() throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "old".write(toFile: dir + "/vol/a", atomically: true, encoding: .utf8)
        var seen = stat()
        #expect(lstat(dir + "/vol/a", &seen) == 0)
        try "new and longer".write(toFile: dir + "/vol/b", atomically: true, encoding: .utf8)
        #expect(rename(dir + "/vol/b", dir + "/vol/a") == 0)
        var total = 0
        let vol = try VolumeSource(dir + "/vol", field: "test", forbidden: [])
        #expect(throws: CocoonError.self) {
            _ = try ContainerMounts.read(vol, relative: "a", expected: seen, total: &total, limit: 1 << 20)
        }
        // A FIFO in a volume: copied as an empty placeholder at once (opening it would block).
        #expect(mkfifo(dir + "/vol/pipe", 0o600) == 0)
        let mounts = try ContainerMounts.copy(
            [.init(hostPath: dir + "/vol", containerPath: "/data", readOnly: true)], forbiddenRoots: [], limit: 1 << 20)
        let pipe = try #require(mounts.first?.entries.first { $0.path == "pipe" })
        #expect(pipe.data.isEmpty && pipe.mode & S_IFMT == S_IFREG)
        #expect(mounts.first?.entries.first { $0.path == "a" }?.data == Data("new and longer".utf8))
    }

    /// A source reached through a /proc magic link (another process's root or descriptors: a way
    /// into other mount namespaces) is refused, for shared and copied volumes alike; the check is of
    /// what was opened, so a symlinked way into a forbidden root is refused as well.
    @Test func magicLinksAndSymlinksIntoForbiddenRootsAreRefused() throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createSymbolicLink(atPath: dir + "/magic", withDestinationPath: "/proc/self/cwd")
        for follow in [false, true] {
            let error = #expect(throws: CocoonError.self) {
                _ = try VolumeSource(
                    dir + "/magic/Sources", field: "mounts[0].host_path", forbidden: [], followLast: follow)
            }
            #expect(
                error?.code == .invalidArgument && error?.message.contains("magic link") == true,
                "\(String(describing: error))")
        }
        #expect(throws: CocoonError.self) {
            _ = try ContainerMounts.copy(
                [.init(hostPath: dir + "/magic", containerPath: "/data", readOnly: true)], forbiddenRoots: [],
                limit: 1 << 20)
        }
        // A symlink on the way into a forbidden root (the daemon's run directory, say).
        try FileManager.default.createDirectory(atPath: dir + "/run/vm", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: dir + "/innocent", withDestinationPath: dir + "/run")
        let inside = #expect(throws: CocoonError.self) {
            _ = try ContainerMounts.copy(
                [.init(hostPath: dir + "/innocent/vm", containerPath: "/data", readOnly: true)],
                forbiddenRoots: [dir + "/run"], limit: 1 << 20)
        }
        #expect(inside?.message.contains("not allowed (inside") == true, "\(String(describing: inside))")
    }
}
