import Foundation
import SwiftProtobuf
import Yams

/// Output formats shared by the listing and inspect commands.
public enum OutputFormat: String, CaseIterable, Sendable {
    case table, json, yaml
}

/// Renders messages as pretty JSON or YAML, and rows as an aligned table.
public enum Render {
    /// Pretty JSON with sorted keys; `info` strings that hold JSON are expanded in place.
    public static func json<M: SwiftProtobuf.Message>(_ message: M) throws -> String {
        let object = try jsonObject(message)
        return try prettyJSON(object)
    }

    public static func yaml<M: SwiftProtobuf.Message>(_ message: M) throws -> String {
        try Yams.dump(object: normalize(try jsonObject(message)), sortKeys: true)
    }

    public static func jsonObject<M: SwiftProtobuf.Message>(_ message: M) throws -> Any {
        let text = try message.jsonString()
        let object = try JSONSerialization.jsonObject(with: Data(text.utf8))
        return expandInfo(object)
    }

    public static func prettyJSON(_ object: Any) throws -> String {
        let data = try JSONSerialization.data(
            withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        return String(decoding: data, as: UTF8.self)
    }

    /// crictl shows verbose `info` values as JSON objects rather than escaped strings.
    static func expandInfo(_ object: Any) -> Any {
        guard var dict = object as? [String: Any] else { return object }
        if let info = dict["info"] as? [String: Any] {
            var expanded: [String: Any] = [:]
            for (k, v) in info {
                // try?: not JSON: kept as a string
                if let s = v as? String, let parsed = try? JSONSerialization.jsonObject(with: Data(s.utf8)) {
                    expanded[k] = parsed
                } else {
                    expanded[k] = v
                }
            }
            dict["info"] = expanded
        }
        return dict
    }

    /// Converts Foundation JSON values (NSNumber, NSNull) into plain Swift values Yams can dump.
    static func normalize(_ value: Any) -> Any {
        switch value {
        case let d as [String: Any]: return d.mapValues(normalize)
        case let a as [Any]: return a.map(normalize)
        case let n as NSNumber:
            if String(describing: type(of: value)).contains("Bool") { return n.boolValue }
            if n.doubleValue == n.doubleValue.rounded() { return n.int64Value }
            return n.doubleValue
        case is NSNull: return "null"
        default: return value
        }
    }

    /// Prints a list response as JSON or YAML, or as the table `table` builds.
    static func emit<M: SwiftProtobuf.Message>(_ message: M, format: String, table: () -> String) throws {
        switch OutputFormat(rawValue: format) ?? .table {
        case .json: print(try json(message))
        case .yaml: print(try yaml(message))
        case .table: print(table())
        }
    }

    public static func table(_ header: [String], _ rows: [[String]]) -> String {
        var widths = header.map(\.count)
        for row in rows {
            for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) }
        }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, c in
                i == cells.count - 1 ? c : c.padding(toLength: widths[i] + 3, withPad: " ", startingAt: 0)
            }.joined()
        }
        return ([line(header)] + rows.map(line)).joined(separator: "\n")
    }

    /// "3 minutes ago", as crictl prints CREATED.
    public static func age(sinceNs: Int64, nowNs: Int64) -> String {
        let seconds = max(0, (nowNs - sinceNs) / 1_000_000_000)
        switch seconds {
        case ..<1: return "Less than a second ago"
        case ..<60: return "\(seconds) second\(seconds == 1 ? "" : "s") ago"
        case ..<3600: return "\(seconds / 60) minute\(seconds / 60 == 1 ? "" : "s") ago"
        case ..<86400: return "\(seconds / 3600) hour\(seconds / 3600 == 1 ? "" : "s") ago"
        default: return "\(seconds / 86400) day\(seconds / 86400 == 1 ? "" : "s") ago"
        }
    }
}
