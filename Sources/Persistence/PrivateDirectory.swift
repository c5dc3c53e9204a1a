import Foundation

/// Directories only the daemon may enter: its state (pod, container and image records, unpacked
/// image trees with whatever setuid files and device nodes an image carries, VM tokens).
public enum PrivateDirectory {
    /// Creates `path` (and its parents) if needed and makes it 0700, whatever it was before.
    public static func ensure(_ path: String) throws {
        try FileManager.default.createDirectory(
            atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        guard chmod(path, 0o700) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EPERM) }
    }
}
