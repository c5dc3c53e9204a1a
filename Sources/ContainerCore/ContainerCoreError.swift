import Glibc

/// Why ContainerCore could not create or run a container process.
public enum ContainerCoreError: Error, Equatable, CustomStringConvertible, Sendable {
    /// The description itself is wrong (names the field).
    case invalidSpec(String)
    /// Something named in the description does not exist (user, group, executable, mount source).
    case notFound(String)
    /// A step of the container's setup failed in the new process: the step and the system error.
    case setupFailed(step: String, errno: Int32)
    /// A host-side system call failed.
    case system(String)

    public var description: String {
        switch self {
        case .invalidSpec(let m), .notFound(let m), .system(let m): return m
        case .setupFailed(let step, let code): return "\(step): \(String(cString: strerror(code)))"
        }
    }

    static func errno(_ what: String, _ code: Int32 = Glibc.errno) -> ContainerCoreError {
        .system("\(what): \(String(cString: strerror(code)))")
    }
}
