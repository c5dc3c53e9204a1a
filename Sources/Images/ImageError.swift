/// Everything that can go wrong with an image, classified the way the CRI layer reports it.
/// Messages name the image, registry, blob or layer entry involved.
public enum ImageError: Error, CustomStringConvertible, Equatable {
    /// A malformed reference, filter or request field.
    case invalidArgument(String)
    /// The image, tag or manifest does not exist (locally or in the registry).
    case notFound(String)
    /// The registry wants credentials and none (or no usable ones) were given.
    case unauthenticated(String)
    /// Credentials were given and rejected, or the registry refused access.
    case permissionDenied(String)
    /// The registry sent something that does not match what it promised (digest, size, format).
    case integrity(String)
    /// A layer tries to escape its root or is otherwise unsafe; refused as a whole.
    case hostileLayer(String)
    /// The registry could not be reached or kept failing after retries.
    case unavailable(String)
    /// The image is in use or pinned, or the operation conflicts with the store's state.
    case failedPrecondition(String)
    /// A local failure (disk full, unpack tool failed, …).
    case internalError(String)

    public var description: String {
        switch self {
        case .invalidArgument(let m), .notFound(let m), .unauthenticated(let m), .permissionDenied(let m),
             .integrity(let m), .hostileLayer(let m), .unavailable(let m), .failedPrecondition(let m),
             .internalError(let m):
            m
        }
    }
}
