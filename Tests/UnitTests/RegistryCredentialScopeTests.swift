import Config
import Errors
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization
import Testing

@testable import Images

/// Where a pull's credentials may go: to the registry they were given for, and nowhere else (not a
/// mirror, not another port of the same host that a redirect points to).
@Suite struct RegistryCredentialScopeTests {
    /// The requests a test server saw: path and Authorization header.
    final class Seen: Sendable {
        private let all = Mutex<[(path: String, authorization: String?)]>([])
        func add(_ path: String, _ authorization: String?) { all.withLock { $0.append((path, authorization)) } }
        var requests: [(path: String, authorization: String?)] { all.withLock { $0 } }
    }

    typealias Respond = @Sendable (HTTPRequestHead) -> (HTTPResponseStatus, [(String, String)])

    /// A tiny HTTP server on 127.0.0.1 that answers by `respond` and records what it was sent.
    final class Handler: ChannelInboundHandler, Sendable {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let seen: Seen
        let respond: Respond
        init(seen: Seen, respond: @escaping Respond) {
            self.seen = seen
            self.respond = respond
        }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard case .head(let head) = unwrapInboundIn(data) else { return }
            seen.add(head.uri, head.headers.first(name: "Authorization"))
            let (status, extra) = respond(head)
            var headers = HTTPHeaders(extra)
            headers.add(name: "Content-Length", value: "0")
            let response = HTTPResponseHead(version: .http1_1, status: status, headers: headers)
            context.write(wrapOutboundOut(.head(response)), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
    }

    func serve(_ seen: Seen, _ respond: @escaping Respond) async throws -> Channel {
        try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline().flatMap {
                    channel.pipeline.addHandler(Handler(seen: seen, respond: respond))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
    }

    @Test func credentialsGoToTheRegistryOnlyNotItsMirrorNorAnotherPort() async throws {
        let (mirrorSeen, registrySeen, elsewhereSeen) = (Seen(), Seen(), Seen())
        // The mirror asks for credentials too (a hostile or misconfigured one would).
        let mirror = try await serve(mirrorSeen) { head in
            head.headers.first(name: "Authorization") == nil
                ? (.unauthorized, [("WWW-Authenticate", "Basic realm=\"mirror\"")]) : (.notFound, [])
        }
        let elsewhere = try await serve(elsewhereSeen) { _ in (.notFound, []) }
        let elsewherePort = elsewhere.localAddress?.port ?? 0
        // The registry asks for Basic credentials, then sends the pull to another port of its host.
        let registry = try await serve(registrySeen) { head in
            head.headers.first(name: "Authorization") == nil
                ? (.unauthorized, [("WWW-Authenticate", "Basic realm=\"test\"")])
                : (.temporaryRedirect, [("Location", "http://127.0.0.1:\(elsewherePort)/v2/lib/img/manifests/latest")])
        }
        defer {
            for c in [mirror, elsewhere, registry] { c.close(promise: nil) }
        }
        let domain = "127.0.0.1:\(registry.localAddress?.port ?? 0)"
        var settings = RegistrySettings()
        settings.mirrors[domain] = ["http://127.0.0.1:\(mirror.localAddress?.port ?? 0)"]
        let client = RegistryClient(settings: settings)
        let repository = RegistryRepository(
            client: client, reference: try ImageReference(parsing: domain + "/lib/img:latest"),
            credentials: RegistryCredentials(username: "user", password: "secret"))
        let error = await #expect(throws: CocoonError.self) { _ = try await repository.manifest("latest") }
        #expect(error?.code == .notFound, "\(String(describing: error))")
        await client.shutdown()

        #expect(!mirrorSeen.requests.isEmpty && mirrorSeen.requests.allSatisfy { $0.authorization == nil })
        #expect(registrySeen.requests.contains { $0.authorization == "Basic dXNlcjpzZWNyZXQ=" })
        #expect(!elsewhereSeen.requests.isEmpty, "the redirect was followed")
        #expect(elsewhereSeen.requests.allSatisfy { $0.authorization == nil }, "\(elsewhereSeen.requests)")
    }
}
