import Foundation
import GRPCCore

/// Cocoon's own gRPC extension served beside CRI on the same socket: `cocoon.v1.Images/Import`
/// loads an image archive that lies on the node (CRI has no import call; this is the ctr/podman
/// habit for air-gapped nodes). Messages are JSON, so no generated code is involved.
public enum ImageImportAPI {
    public static let method = MethodDescriptor(fullyQualifiedService: "cocoon.v1.Images", method: "Import")

    public struct Request: Codable, Sendable, Equatable {
        /// Absolute path on the node: an OCI layout directory, a tar of one, or a `docker save` tarball.
        public var path: String
        /// Name for images the archive does not name fully (`repo[:tag]`).
        public var name: String?
        public init(path: String, name: String? = nil) {
            self.path = path
            self.name = name
        }
    }

    public struct Image: Codable, Sendable, Equatable {
        public var id: String
        public var names: [String]
        public init(id: String, names: [String]) {
            self.id = id
            self.names = names
        }
    }

    public struct Response: Codable, Sendable, Equatable {
        public var images: [Image]
        public init(images: [Image]) { self.images = images }
    }
}

/// Serializes Codable messages as JSON for the extension API.
public struct JSONMessageCoder<Message: Codable & Sendable>: MessageSerializer, MessageDeserializer {
    public init() {}

    public func serialize<Bytes: GRPCContiguousBytes>(_ message: Message) throws -> Bytes {
        Bytes(try JSONEncoder().encode(message))
    }

    public func deserialize<Bytes: GRPCContiguousBytes>(_ serializedMessageBytes: Bytes) throws -> Message {
        let data = serializedMessageBytes.withUnsafeBytes { Data($0) }
        do {
            return try JSONDecoder().decode(Message.self, from: data)
        } catch {
            throw RPCError(code: .invalidArgument, message: "malformed \(Message.self) message: \(error)")
        }
    }
}
