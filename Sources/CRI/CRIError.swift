import AgentClient
import GRPCCore
import Hypervisor
import Images
import Sandboxes

/// The one place where Cocoon's errors become gRPC statuses. Every CRI handler runs its body
/// through `mapErrors`, so a typed error always reaches the client with the right code and a
/// message naming the field or object, and nothing escapes as an opaque internal error.
public enum CRIError: Error, CustomStringConvertible {
    case invalidArgument(String)
    case notFound(String)
    case unimplemented(String)
    case sandbox(SandboxError)

    public var description: String { rpcError.message }

    public var rpcError: RPCError {
        switch self {
        case .invalidArgument(let m): RPCError(code: .invalidArgument, message: m)
        case .notFound(let m): RPCError(code: .notFound, message: m)
        case .unimplemented(let call): RPCError(code: .unimplemented, message: "\(call) is not implemented by cocoon yet")
        case .sandbox(let e): e.rpcError
        }
    }
}

extension SandboxError {
    public var rpcError: RPCError {
        switch self {
        case .invalidArgument(let m): RPCError(code: .invalidArgument, message: m)
        case .notFound(let m): RPCError(code: .notFound, message: m)
        case .alreadyExists(let m): RPCError(code: .alreadyExists, message: m)
        case .failedPrecondition(let m): RPCError(code: .failedPrecondition, message: m)
        case .deadlineExceeded(let m): RPCError(code: .deadlineExceeded, message: m)
        case .unavailable(let m): RPCError(code: .unavailable, message: m)
        case .internalError(let m): RPCError(code: .internalError, message: m)
        }
    }
}

extension ImageError {
    public var rpcError: RPCError {
        switch self {
        case .invalidArgument(let m): RPCError(code: .invalidArgument, message: m)
        case .notFound(let m): RPCError(code: .notFound, message: m)
        case .unauthenticated(let m): RPCError(code: .unauthenticated, message: m)
        case .permissionDenied(let m): RPCError(code: .permissionDenied, message: m)
        case .integrity(let m): RPCError(code: .dataLoss, message: m)
        case .hostileLayer(let m): RPCError(code: .invalidArgument, message: m)
        case .unavailable(let m): RPCError(code: .unavailable, message: m)
        case .failedPrecondition(let m): RPCError(code: .failedPrecondition, message: m)
        case .internalError(let m): RPCError(code: .internalError, message: m)
        }
    }
}

/// Runs a handler body and converts any Cocoon error into its gRPC status.
func mapErrors<T: Sendable>(_ body: () async throws -> T) async throws -> T {
    do {
        return try await body()
    } catch let e as RPCError {
        throw e
    } catch let e as CRIError {
        throw e.rpcError
    } catch let e as SandboxError {
        throw e.rpcError
    } catch let e as ImageError {
        throw e.rpcError
    } catch let e as HypervisorError {
        throw RPCError(code: .unavailable, message: e.description)
    } catch let e as AgentClientError {
        if case .deadlineExceeded = e { throw RPCError(code: .deadlineExceeded, message: e.description) }
        throw RPCError(code: .unavailable, message: e.description)
    } catch {
        throw RPCError(code: .internalError, message: "\(error)")
    }
}
