import Foundation
import SwiftProtobuf
import Yams

/// Reads crictl-style JSON or YAML spec files (snake_case proto names or camelCase) into messages.
public enum SpecFile {
    public static func load<M: SwiftProtobuf.Message>(_ type: M.Type, path: String) throws -> M {
        guard let data = FileManager.default.contents(atPath: path) else { throw CLIError("cannot read \(path)") }
        return try parse(type, text: String(decoding: data, as: UTF8.self), name: path)
    }

    public static func parse<M: SwiftProtobuf.Message>(_ type: M.Type, text: String, name: String = "spec") throws -> M
    {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        var json = trimmed
        if !trimmed.hasPrefix("{") {
            let object: Any?
            do {
                object = try Yams.load(yaml: text)
            } catch {
                throw CLIError("\(name): invalid YAML: \(error)")
            }
            guard let object, JSONSerialization.isValidJSONObject(object) else {
                throw CLIError("\(name): expected a YAML mapping")
            }
            let data = try JSONSerialization.data(withJSONObject: object)
            json = String(decoding: data, as: UTF8.self)
        }
        var options = JSONDecodingOptions()
        options.ignoreUnknownFields = true
        do {
            return try M(jsonString: json, options: options)
        } catch {
            throw CLIError("\(name): not a valid \(M.protoMessageName): \(error)")
        }
    }
}
