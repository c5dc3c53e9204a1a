import Errors
import Foundation

/// The OCI / Docker schema2 documents a pull reads. Decoded from untrusted registry bytes, so each
/// has a size cap (`MediaTypes.maxManifestBytes`) and is validated before use.
public enum MediaTypes {
    public static let ociIndex = "application/vnd.oci.image.index.v1+json"
    public static let ociManifest = "application/vnd.oci.image.manifest.v1+json"
    public static let ociConfig = "application/vnd.oci.image.config.v1+json"
    public static let dockerList = "application/vnd.docker.distribution.manifest.list.v2+json"
    public static let dockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
    public static let dockerConfig = "application/vnd.docker.container.image.v1+json"
    public static let ociLayer = "application/vnd.oci.image.layer.v1.tar"
    public static let dockerLayerGzip = "application/vnd.docker.image.rootfs.diff.tar.gzip"

    /// Every manifest type a pull accepts, in preference order.
    public static let acceptedManifests = [ociIndex, dockerList, ociManifest, dockerManifest]
    public static let indexTypes: Set = [ociIndex, dockerList]
    public static let manifestTypes: Set = [ociManifest, dockerManifest]
    /// Layer media types the unpacker reads (compression is detected from the bytes).
    public static let layerTypes: Set = [
        ociLayer, ociLayer + "+gzip", ociLayer + "+zstd", dockerLayerGzip,
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    ]
    public static let maxManifestBytes = 4 << 20
    public static let maxConfigBytes = 8 << 20
}

public struct Platform: Codable, Sendable, Equatable {
    public var architecture: String
    public var os: String
    public var variant: String?
    public init(architecture: String, os: String, variant: String? = nil) {
        self.architecture = architecture
        self.os = os
        self.variant = variant
    }
    /// The platform this node runs: linux/amd64 (the only one Cocoon's guests boot).
    public static let node = Platform(architecture: "amd64", os: "linux")
}

public struct Descriptor: Codable, Sendable, Equatable {
    public var mediaType: String?
    public var digest: Digest
    public var size: Int64
    public var platform: Platform?
    public var annotations: [String: String]?
}

/// An image manifest (OCI or Docker schema2).
public struct Manifest: Codable, Sendable {
    public var schemaVersion: Int
    public var mediaType: String?
    public var config: Descriptor
    public var layers: [Descriptor]
}

/// An image index / manifest list.
public struct ImageIndex: Codable, Sendable {
    public var schemaVersion: Int
    public var mediaType: String?
    public var manifests: [Descriptor]

    /// The manifest for `platform`: an exact variant match first, then any variant of the arch.
    public func manifest(for platform: Platform) -> Descriptor? {
        let candidates = manifests.filter {
            $0.platform?.os == platform.os && $0.platform?.architecture == platform.architecture
        }
        if let v = platform.variant, let exact = candidates.first(where: { $0.platform?.variant == v }) { return exact }
        return candidates.first(where: { $0.platform?.variant == nil }) ?? candidates.first
    }
}

/// The parts of the image configuration the runtime uses.
public struct ImageConfig: Codable, Sendable {
    public struct Config: Codable, Sendable {
        public var User: String?
        public var Env: [String]?
        public var Entrypoint: [String]?
        public var Cmd: [String]?
        public var WorkingDir: String?
        public var Labels: [String: String]?
        public var StopSignal: String?
        public var Volumes: [String: EmptyObject]?
        public var ExposedPorts: [String: EmptyObject]?
    }
    public struct RootFS: Codable, Sendable {
        public var type: String
        public var diff_ids: [Digest]
    }
    public struct EmptyObject: Codable, Sendable {}
    public var architecture: String?
    public var os: String?
    public var config: Config?
    public var rootfs: RootFS
}

enum DocumentDecoder {
    /// Decodes a registry document, turning decode failures into a message naming the document.
    static func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8], what: String) throws(CocoonError) -> T {
        do {
            return try JSONDecoder().decode(T.self, from: Data(bytes))
        } catch {
            throw .integrity("\(what) is not a valid \(T.self) document: \(error)")
        }
    }

    /// The media type a manifest declares, in its body (or nil).
    static func mediaType(of bytes: [UInt8]) -> String? {
        struct Probe: Decodable {
            var mediaType: String?
            var manifests: [Descriptor]?
        }
        // try?: not JSON: no media type, and decode reports why
        guard let p = try? JSONDecoder().decode(Probe.self, from: Data(bytes)) else { return nil }
        if let m = p.mediaType { return m }
        return p.manifests != nil ? MediaTypes.ociIndex : nil
    }
}
