import AsyncHTTPClient
import Errors
import Foundation
import NIOCore
import NIOHTTP1
import Synchronization

/// One repository as seen by one pull: reads manifests and blobs of `reference` with the pull's
/// credentials, trying each endpoint (mirrors, then the registry) until one answers.
struct RegistryRepository: ImageSource {
    let client: RegistryClient
    let reference: ImageReference
    let credentials: RegistryCredentials
    /// Endpoints that could not be reached during this pull: skipped for its remaining requests.
    let unreachable = UnreachableEndpoints()
    var scope: String { "repository:\(reference.path):pull" }

    /// The pull's credentials are the registry's: a mirror is asked anonymously.
    func credentials(for base: String) -> RegistryCredentials {
        base == client.endpoints(for: reference.domain).last ? credentials : RegistryCredentials()
    }

    /// A manifest or index, verified against `digest` when pulled by digest.
    func manifest(_ tagOrDigest: String) async throws(CocoonError) -> (
        bytes: [UInt8], mediaType: String, digest: Digest
    ) {
        try await failover { base throws(CocoonError) in
            let url = "\(base)/v2/\(reference.path)/manifests/\(tagOrDigest)"
            let response = try await client.send(
                url, accept: MediaTypes.acceptedManifests, scope: scope,
                credentials: credentials(for: base), timeout: .seconds(60))
            let body: ByteBuffer
            do { body = try await response.body.collect(upTo: MediaTypes.maxManifestBytes) } catch {
                throw .integrity(
                    "manifest of \(reference) from \(base): larger than \(MediaTypes.maxManifestBytes) bytes or "
                        + "cut off (\(error))"
                )
            }
            switch response.status.code {
            case 200: break
            case 404:
                throw .notFound(
                    "image \"\(reference)\" not found: \(base) has no manifest \(tagOrDigest) for \(reference.path)")
            default: throw .unavailable("manifest of \(reference) from \(base): HTTP \(response.status.code)")
            }
            let bytes = [UInt8](buffer: body)
            let digest = Digest.of(bytes)
            if tagOrDigest.hasPrefix("sha256:"), digest.description != tagOrDigest {
                throw .integrity("manifest digest mismatch for \(reference): asked for \(tagOrDigest), got \(digest)")
            }
            let declared = response.headers.first(name: "Content-Type").map {
                String($0.split(separator: ";")[0]).trimmingSpaces
            }
            let type = DocumentDecoder.mediaType(of: bytes) ?? declared ?? ""
            guard MediaTypes.indexTypes.contains(type) || MediaTypes.manifestTypes.contains(type) else {
                throw .invalidArgument(
                    "image \(reference): unsupported manifest type \"\(type)\" (schema1 and artifacts are not "
                        + "images Cocoon runs)"
                )
            }
            return (bytes, type, digest)
        }
    }

    /// Downloads a blob into the content store, verifying size and digest while streaming.
    func fetchBlob(_ d: Descriptor, into store: ContentStore, progress: @Sendable (Int64) -> Void)
        async throws(CocoonError)
    {
        if store.has(d.digest, size: d.size) {
            progress(d.size)
            return
        }
        try await failover { base throws(CocoonError) in
            var lastError: CocoonError = .unavailable("blob \(d.digest): no attempt made")
            for attempt in 1...RegistryClient.attempts {
                let writer = try store.writer(digest: d.digest, expectedSize: d.size)
                var reported: Int64 = 0
                var streaming = false
                do {
                    let url = "\(base)/v2/\(reference.path)/blobs/\(d.digest)"
                    let response = try await client.send(
                        url, scope: scope, credentials: credentials(for: base), timeout: .hours(2))
                    streaming = true
                    switch response.status.code {
                    case 200: break
                    case 404: throw CocoonError.notFound("image \(reference): \(base) has no blob \(d.digest)")
                    default:
                        throw CocoonError.unavailable("blob \(d.digest) from \(base): HTTP \(response.status.code)")
                    }
                    for try await chunk in response.body {
                        try writer.append(chunk)
                        reported += Int64(chunk.readableBytes)
                        progress(Int64(chunk.readableBytes))
                    }
                    try writer.commit()
                    return
                } catch let e as CocoonError {
                    writer.abort()
                    progress(-reported)
                    // `send` already retried getting a response; only a cut-off body is retried here.
                    if e.code == .unavailable, streaming, attempt < RegistryClient.attempts {
                        lastError = e
                        continue
                    }
                    throw e
                } catch {
                    writer.abort()
                    progress(-reported)
                    lastError = .unavailable("blob \(d.digest) from \(base): \(error)")
                    // try?: cancellation ends the back-off early
                    if attempt < RegistryClient.attempts {
                        try? await Task.sleep(for: .milliseconds(200 << attempt))
                        continue
                    }
                }
            }
            throw lastError
        }
    }

    /// Runs `body` against each endpoint in turn; the last endpoint's error is the one reported.
    private func failover<T>(_ body: (String) async throws(CocoonError) -> T) async throws(CocoonError) -> T {
        let all = client.endpoints(for: reference.domain)
        let live = all.filter { !unreachable.contains($0) }
        let endpoints = live.isEmpty ? [all[all.count - 1]] : live
        var lastError: CocoonError = .unavailable("no endpoint for \(reference.domain)")
        for (i, base) in endpoints.enumerated() {
            do {
                return try await body(base)
            } catch {
                // An endpoint that answered (not found, auth) says more than one that was unreachable.
                if error.code == .unavailable {
                    unreachable.insert(base)
                    if lastError.code == .unavailable { lastError = error } else if i == 0 { lastError = error }
                } else {
                    lastError = error
                }
                if i < endpoints.count - 1 {
                    client.logger.info(
                        "mirror failed, trying the next endpoint", metadata: ["mirror": "\(base)", "error": "\(error)"])
                }
            }
        }
        throw lastError
    }
}

/// The endpoints one pull found unreachable (shared by its concurrent layer downloads).
final class UnreachableEndpoints: Sendable {
    private let set = Mutex<Set<String>>([])
    func insert(_ e: String) { _ = set.withLock { $0.insert(e) } }
    func contains(_ e: String) -> Bool { set.withLock { $0.contains(e) } }
}
