import CRI
import CocoonAPI
import GRPCCore
import Sandboxes

/// Serves `cocoon.v1.Templates/Rebuild` (see `TemplateRebuildAPI`). Errors map like every CRI call's.
public struct TemplateRebuildService: RegistrableRPCService {
    let sandboxes: SandboxManager

    public init(sandboxes: SandboxManager) {
        self.sandboxes = sandboxes
    }

    public func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
        let sandboxes = self.sandboxes
        router.registerHandler(
            forMethod: TemplateRebuildAPI.method,
            deserializer: JSONMessageCoder<TemplateRebuildAPI.Request>(),
            serializer: JSONMessageCoder<TemplateRebuildAPI.Response>()
        ) { request, _ in
            let single = try await ServerRequest(stream: request)
            let response = try await mapErrors {
                let rebuilt = try await sandboxes.rebuildTemplates(single.message.handler)
                return TemplateRebuildAPI.Response(
                    templates: rebuilt.map {
                        .init(
                            handler: $0.handler, key: $0.key ?? "", buildMs: $0.buildMs ?? 0,
                            ramDataMiB: $0.ramDataMiB ?? 0)
                    })
            }
            return StreamingServerResponse(single: ServerResponse(message: response))
        }
    }
}
