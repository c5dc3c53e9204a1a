import Foundation

/// How an exec or attach ended, as the client reads it from the error stream when the session
/// closes: from v4 on, a metav1.Status JSON document (Success; or Failure with reason
/// NonZeroExitCode and an ExitCode cause); before v4, nothing on success and the message as text.
public enum RemoteCommandStatus: Sendable, Equatable {
    case success
    case exitCode(Int32, command: [String])
    case failure(String)

    /// The bytes to write on the error stream for `version`; empty means write nothing.
    public func encoded(for version: StreamProtocol) -> [UInt8] {
        guard version.reportsJSONStatus else {
            switch self {
            case .success: return []
            case .exitCode(let code, let command):
                return Array("command terminated with non-zero exit code: \(Self.detail(code, command))".utf8)
            case .failure(let message): return Array(message.utf8)
            }
        }
        let document: Document
        switch self {
        case .success:
            document = Document(status: "Success")
        case .exitCode(let code, let command):
            document = Document(
                status: "Failure", message: "command terminated with non-zero exit code: \(Self.detail(code, command))",
                reason: "NonZeroExitCode", details: .init(causes: [.init(reason: "ExitCode", message: "\(code)")]))
        case .failure(let message):
            document = Document(status: "Failure", message: message, reason: "InternalError", code: 500)
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Encoding fixed strings and integers cannot fail; an empty document would still end the session.
        return (try? encoder.encode(document)).map { [UInt8]($0) } ?? []
    }

    /// containerd's wording (the command as Go prints a slice).
    private static func detail(_ code: Int32, _ command: [String]) -> String {
        "error executing command [\(command.joined(separator: " "))], exit code \(code)"
    }

    /// metav1.Status as the kubelet's server marshals it (`metadata` always present, kind and
    /// apiVersion never; a cause's type is its `reason`).
    struct Document: Codable, Equatable {
        struct Details: Codable, Equatable {
            struct Cause: Codable, Equatable {
                var reason: String
                var message: String
            }
            var causes: [Cause]
        }
        struct Metadata: Codable, Equatable {}
        var metadata = Metadata()
        var status: String
        var message: String?
        var reason: String?
        var details: Details?
        var code: Int?
    }
}

/// A terminal size sent on the resize stream or channel: `{"Width":80,"Height":24}`, one per line.
public struct TerminalSize: Sendable, Equatable, Codable {
    public var width: UInt16
    public var height: UInt16
    enum CodingKeys: String, CodingKey {
        case width = "Width"
        case height = "Height"
    }
    public init(width: UInt16, height: UInt16) {
        self.width = width
        self.height = height
    }

    /// Splits what arrived on the resize stream into sizes: newline-ended JSON documents, or one
    /// whole document; `carry` keeps an unfinished one (at most 256 bytes: a size is tiny, anything
    /// longer is dropped). Lines that are not sizes are skipped.
    public static func parse(_ bytes: [UInt8], carry: inout [UInt8]) -> [TerminalSize] {
        carry += bytes
        var sizes: [TerminalSize] = []
        while let nl = carry.firstIndex(of: 0x0A) {
            let line = Array(carry[..<nl])
            carry.removeSubrange(...nl)
            // try?: a line that is not a size is ignored, as the kubelet does
            if let size = try? JSONDecoder().decode(TerminalSize.self, from: Data(line)) { sizes.append(size) }
        }
        // A whole document without its newline (one WebSocket message) is a size too, as for a
        // JSON stream decoder.
        if !carry.isEmpty, let size = try? JSONDecoder().decode(TerminalSize.self, from: Data(carry)) {
            sizes.append(size)
            carry.removeAll()
        }
        if carry.count > 256 { carry.removeAll() }
        return sizes
    }
}
