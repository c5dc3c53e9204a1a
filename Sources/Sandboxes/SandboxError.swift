/// Why a sandbox operation failed; the CRI layer maps each case to one gRPC status code.
public enum SandboxError: Error, CustomStringConvertible, Equatable {
    case invalidArgument(String)
    case notFound(String)
    case alreadyExists(String)
    case failedPrecondition(String)
    case deadlineExceeded(String)
    case unavailable(String)
    case internalError(String)

    public var description: String {
        switch self {
        case .invalidArgument(let m), .notFound(let m), .alreadyExists(let m), .failedPrecondition(let m),
            .deadlineExceeded(let m), .unavailable(let m), .internalError(let m):
            m
        }
    }
}
