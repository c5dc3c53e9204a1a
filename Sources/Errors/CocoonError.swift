/// The one error type of Cocoon's services (sandboxes, containers, images, ids): a code the CRI
/// edge maps to a gRPC status, a message naming the field or object, and the underlying error
/// when there is one (an agent refusal, a hypervisor failure, a file system error).
public struct CocoonError: Error, CustomStringConvertible, Equatable, Sendable {
    /// How the failure is reported; one gRPC status code each.
    public enum Code: String, Sendable, Equatable {
        case invalidArgument, notFound, alreadyExists, failedPrecondition, deadlineExceeded, unavailable
        case unauthenticated, permissionDenied, dataLoss, unimplemented, internalError
    }

    public var code: Code
    public var message: String
    /// What went wrong underneath, kept for logs and `debugDescription`.
    public var cause: (any Error)?

    public init(_ code: Code, _ message: String, cause: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    public var description: String { message }

    /// Equal when code and message are (the cause is context, not identity).
    public static func == (a: CocoonError, b: CocoonError) -> Bool { a.code == b.code && a.message == b.message }

    public static func invalidArgument(_ m: String, cause: (any Error)? = nil) -> Self {
        .init(.invalidArgument, m, cause: cause)
    }
    public static func notFound(_ m: String, cause: (any Error)? = nil) -> Self { .init(.notFound, m, cause: cause) }
    public static func alreadyExists(_ m: String, cause: (any Error)? = nil) -> Self {
        .init(.alreadyExists, m, cause: cause)
    }
    public static func failedPrecondition(_ m: String, cause: (any Error)? = nil) -> Self {
        .init(.failedPrecondition, m, cause: cause)
    }
    public static func deadlineExceeded(_ m: String, cause: (any Error)? = nil) -> Self {
        .init(.deadlineExceeded, m, cause: cause)
    }
    public static func unavailable(_ m: String, cause: (any Error)? = nil) -> Self {
        .init(.unavailable, m, cause: cause)
    }
    public static func unauthenticated(_ m: String, cause: (any Error)? = nil) -> Self {
        .init(.unauthenticated, m, cause: cause)
    }
    public static func permissionDenied(_ m: String, cause: (any Error)? = nil) -> Self {
        .init(.permissionDenied, m, cause: cause)
    }
    /// What a registry or a guest sent does not match what it promised (digest, size, format).
    public static func integrity(_ m: String, cause: (any Error)? = nil) -> Self { .init(.dataLoss, m, cause: cause) }
    /// A layer tries to escape its root or is otherwise unsafe; refused as a whole.
    public static func hostileLayer(_ m: String, cause: (any Error)? = nil) -> Self {
        .init(.invalidArgument, m, cause: cause)
    }
    public static func unimplemented(_ m: String) -> Self { .init(.unimplemented, m) }
    public static func internalError(_ m: String, cause: (any Error)? = nil) -> Self {
        .init(.internalError, m, cause: cause)
    }

    /// A local failure of `what` (a file write, a directory) with the system's error as its cause.
    public static func local(_ what: String, _ error: any Error) -> Self {
        .init(.internalError, "\(what): \(error)", cause: error)
    }
}

extension CocoonError: CustomDebugStringConvertible {
    public var debugDescription: String {
        guard let cause else { return "\(code.rawValue): \(message)" }
        return "\(code.rawValue): \(message) (cause: \(String(reflecting: cause)))"
    }
}
