import Errors
import Foundation

/// The JSON of verbose `info` maps (Status, PodSandboxStatus, ContainerStatus): always through
/// Codable, keys sorted, so every string is escaped and the output is stable.
enum VerboseJSON {
    static func encode(_ value: some Encodable) throws(CocoonError) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        do {
            return String(decoding: try encoder.encode(value), as: UTF8.self)
        } catch {
            throw .internalError("cannot encode verbose info: \(error)", cause: error)
        }
    }
}
