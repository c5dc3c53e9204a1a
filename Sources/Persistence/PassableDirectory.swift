import Foundation

/// Directories others may pass through but that the daemon's umask (077) would close: the run
/// directory chain a jailed VM process walks to its own files, the state root above the private
/// directories, and directories other node components read (/var/run/netns, container log
/// directories). Each component this creates gets `mode` exactly; existing ones are left as they are.
public enum PassableDirectory {
    /// Creates the missing components of `path` with `mode` (0711: passable, not listable).
    public static func ensure(_ path: String, mode: mode_t = 0o711) throws {
        var current = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            current += "/" + component
            if mkdir(current, mode) == 0 {
                guard chmod(current, mode) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EPERM) }
            } else if errno != EEXIST {
                throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EPERM)
            }
        }
    }
}
