import Foundation

/// What Cocoon knows about one stored image, persisted as `<images>/metadata/<id hex>.json`.
/// The id is the config digest, as in containerd and Docker.
public struct ImageRecord: Codable, Sendable, Equatable {
    public var id: Digest
    /// `domain/path:tag` names pointing at this image.
    public var repoTags: [String]
    /// `domain/path@sha256:…` names (digest of the manifest or index that was pulled).
    public var repoDigests: [String]
    public var manifestDigest: Digest
    public var layers: [Descriptor]
    /// Every blob this image holds on to in the content store (index, manifest, config, layers).
    public var blobs: [Digest]
    /// Sum of the stored blob sizes.
    public var size: Int64
    /// `User` from the image config (`uid`, `uid:gid`, `name` or `name:group`).
    public var user: String
    public var pinned: Bool
    public var pulledAt: Date
    /// The unpacked root filesystem (directory), `<images>/rootfs/<chain id hex>`.
    public var rootfs: String
    /// The chain id of the image's layers, set once the tree was unpacked with every layer checked
    /// against its diff id. A record without it (written before that check existed) is not trusted:
    /// its tree is unpacked again from the stored blobs before any container uses it.
    public var chainID: Digest?
    /// The same tree as a read-only EROFS block image, what a pod VM attaches (`<rootfs>.erofs`).
    public var rootfsImage: String { rootfs + ".erofs" }
    public var fetchSeconds: Double
    public var unpackSeconds: Double
    /// Time the block image took to build (nil until it is built).
    public var blockImageSeconds: Double?

    public var idString: String { id.description }

    /// The numeric uid of `user`, when the user part is a number.
    public var uid: Int64? {
        let name = user.split(separator: ":", maxSplits: 1).first.map(String.init) ?? ""
        return Int64(name)
    }

    /// The user name, when `user` names the user rather than a uid.
    public var username: String {
        let name = user.split(separator: ":", maxSplits: 1).first.map(String.init) ?? ""
        return Int64(name) == nil ? name : ""
    }
}
