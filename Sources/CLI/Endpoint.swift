import CRIAPI
import CocoonAPI
import GRPCCore
import GRPCNIOTransportHTTP2

/// A CRI endpoint as crictl spells it: `unix:///path`, or a bare absolute path.
public struct Endpoint: Equatable, Sendable {
    public static let defaultValue = "unix:///run/cocoon/cocoon.sock"
    public let socketPath: String

    public init(parsing text: String) throws(CLIError) {
        if text.hasPrefix("unix://") {
            socketPath = String(text.dropFirst("unix://".count))
        } else if text.hasPrefix("/") {
            socketPath = text
        } else {
            throw CLIError("runtime endpoint \"\(text)\" is not supported: use unix:///path/to/socket")
        }
        guard socketPath.hasPrefix("/") else {
            throw CLIError("runtime endpoint \"\(text)\" must name an absolute socket path")
        }
    }

    /// Runs `body` with connected RuntimeService and ImageService clients.
    public func withClients<R: Sendable>(
        _ body: (
            Runtime_V1_RuntimeService.Client<HTTP2ClientTransport.Posix>,
            Runtime_V1_ImageService.Client<HTTP2ClientTransport.Posix>
        ) async throws -> R
    ) async throws -> R {
        let transport = try HTTP2ClientTransport.Posix(
            target: .unixDomainSocket(path: socketPath), transportSecurity: .plaintext)
        return try await withGRPCClient(transport: transport) { client in
            try await body(
                Runtime_V1_RuntimeService.Client(wrapping: client), Runtime_V1_ImageService.Client(wrapping: client))
        }
    }
}

extension Endpoint {
    /// Cocoon's image import extension (`cocoon.v1.Images/Import`); other runtimes answer UNIMPLEMENTED.
    public func importImage(_ request: ImageImportAPI.Request, options: CallOptions) async throws
        -> ImageImportAPI.Response
    {
        let transport = try HTTP2ClientTransport.Posix(
            target: .unixDomainSocket(path: socketPath), transportSecurity: .plaintext)
        return try await withGRPCClient(transport: transport) { client in
            try await client.unary(
                request: ClientRequest(message: request), descriptor: ImageImportAPI.method,
                serializer: JSONMessageCoder<ImageImportAPI.Request>(),
                deserializer: JSONMessageCoder<ImageImportAPI.Response>(),
                options: options
            ) { try $0.message }
        }
    }
}

extension Endpoint {
    /// Cocoon's template extension (`cocoon.v1.Templates/Rebuild`).
    public func rebuildTemplates(_ request: TemplateRebuildAPI.Request, options: CallOptions) async throws
        -> TemplateRebuildAPI.Response
    {
        let transport = try HTTP2ClientTransport.Posix(
            target: .unixDomainSocket(path: socketPath), transportSecurity: .plaintext)
        return try await withGRPCClient(transport: transport) { client in
            try await client.unary(
                request: ClientRequest(message: request), descriptor: TemplateRebuildAPI.method,
                serializer: JSONMessageCoder<TemplateRebuildAPI.Request>(),
                deserializer: JSONMessageCoder<TemplateRebuildAPI.Response>(),
                options: options
            ) { try $0.message }
        }
    }
}

/// A user-facing CLI error, printed as `cocoonctl: <message>`.
public struct CLIError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
