import AgentClient
import Errors
import GRPCCore
import Hypervisor

/// The one place where Cocoon's errors become gRPC statuses. Every CRI handler runs its body
/// through `mapErrors`, so an error reaches the client with the right code and a message naming
/// the field or object, and nothing escapes as an opaque internal error.
extension CocoonError {
    public var rpcError: RPCError {
        let status: RPCError.Code
        switch code {
        case .invalidArgument: status = .invalidArgument
        case .notFound: status = .notFound
        case .alreadyExists: status = .alreadyExists
        case .failedPrecondition: status = .failedPrecondition
        case .deadlineExceeded: status = .deadlineExceeded
        case .unavailable: status = .unavailable
        case .unauthenticated: status = .unauthenticated
        case .permissionDenied: status = .permissionDenied
        case .dataLoss: status = .dataLoss
        case .unimplemented: status = .unimplemented
        case .internalError: status = .internalError
        }
        return RPCError(code: status, message: message)
    }

    /// A CRI call Cocoon does not build (yet).
    static func notImplemented(_ call: String) -> CocoonError {
        .unimplemented("\(call) is not implemented by cocoon yet")
    }
}

/// Runs a handler body and converts any Cocoon error into its gRPC status.
public func mapErrors<T: Sendable>(_ body: () async throws -> T) async throws -> T {
    do {
        return try await body()
    } catch let e as RPCError {
        throw e
    } catch let e as CocoonError {
        throw e.rpcError
    } catch let e as HypervisorError {
        throw RPCError(code: .unavailable, message: e.description)
    } catch let e as AgentClientError {
        throw CocoonError.from(e, "guest agent").rpcError
    } catch {
        throw RPCError(code: .internalError, message: "\(error)")
    }
}
