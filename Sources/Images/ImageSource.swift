import Errors

/// Where a pull reads an image's documents and blobs from: a registry (`RegistryRepository`) or a
/// local OCI image layout (`OCILayoutSource`, for `image import`). Either way every byte is
/// verified against its digest before the content store keeps it.
protocol ImageSource: Sendable {
    /// The top document for a tag (or the chosen entry), or any manifest/index by digest.
    func manifest(_ tagOrDigest: String) async throws(CocoonError) -> (
        bytes: [UInt8], mediaType: String, digest: Digest
    )
    /// Streams a blob into the content store (verified); `progress` gets byte counts (negative on retry).
    func fetchBlob(_ d: Descriptor, into store: ContentStore, progress: @Sendable (Int64) -> Void)
        async throws(CocoonError)
}

extension ImageSource {
    /// Small blobs (config) read into memory and stored.
    func blobBytes(_ d: Descriptor, into store: ContentStore, limit: Int) async throws(CocoonError) -> [UInt8] {
        guard d.size >= 0, d.size <= Int64(limit) else {
            throw .integrity("blob \(d.digest) declares \(d.size) bytes (limit \(limit))")
        }
        try await fetchBlob(d, into: store, progress: { _ in })
        return try store.read(d.digest, limit: limit)
    }
}
