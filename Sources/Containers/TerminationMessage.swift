import Glibc
import SystemFiles

/// A container's termination message: what it wrote to its `terminationMessagePath` (the kubelet's
/// annotation), read from the host file of the volume mounted there, at most 4096 bytes as the
/// kubelet reads it. Nil when the path is not a volume, the file is empty or is not a regular file.
enum TerminationMessage {
    static let pathAnnotation = "io.kubernetes.container.terminationMessagePath"
    static let limit = 4096

    static func read(_ record: ContainerRecord) -> String? {
        guard let path = record.annotations[pathAnnotation], !path.isEmpty,
            let mount = record.mounts.last(where: { normalized($0.containerPath) == normalized(path) })
        else { return nil }
        let fd = open(mount.hostPath, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { return nil }
        let text = FileText.readAll(fd, limit: limit)
        return text.isEmpty ? nil : text
    }

    private static func normalized(_ path: String) -> String {
        "/" + path.split(separator: "/").joined(separator: "/")
    }
}
