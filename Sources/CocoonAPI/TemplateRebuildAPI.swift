import GRPCCore

/// `cocoon.v1.Templates/Rebuild` (Cocoon's extension, JSON messages like `ImageImportAPI`): builds the
/// template of a `start = "template"` handler again now, whatever its saved one is; its pool is
/// refilled from the new one. Running pods keep the template they were cloned from.
public enum TemplateRebuildAPI {
    public static let method = MethodDescriptor(fullyQualifiedService: "cocoon.v1.Templates", method: "Rebuild")

    public struct Request: Codable, Sendable, Equatable {
        /// The handler; empty: every template handler.
        public var handler: String
        public init(handler: String) { self.handler = handler }
    }

    public struct Template: Codable, Sendable, Equatable {
        public var handler: String
        public var key: String
        public var buildMs: Double
        public var ramDataMiB: Int64
        public init(handler: String, key: String, buildMs: Double, ramDataMiB: Int64) {
            self.handler = handler
            self.key = key
            self.buildMs = buildMs
            self.ramDataMiB = ramDataMiB
        }
    }

    public struct Response: Codable, Sendable, Equatable {
        public var templates: [Template]
        public init(templates: [Template]) { self.templates = templates }
    }
}
