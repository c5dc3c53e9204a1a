import Errors
import Foundation
import Logging

/// Owns one kind of persisted record on disk, each written atomically as JSON (temp file, fsync,
/// rename). Two layouts: a directory per record (`root/<key>/<file>`, beside the record's other
/// files such as a VM's console log) or a file per record (`root/<key>.json`). A file that does not
/// parse is moved aside (never deleted) and logged.
public struct JSONRecordStore<Record: Codable & Sendable>: Sendable {
    public enum Layout: Sendable {
        case directoryPerRecord(fileName: String)
        case filePerRecord
    }

    public let root: String
    private let layout: Layout
    private let keyOf: @Sendable (Record) -> String
    private let what: String
    private let logger: Logger

    /// `what` names the records in errors ("sandbox"); `key` is the record's file or directory name.
    public init(root: String, layout: Layout, what: String, key: @escaping @Sendable (Record) -> String, logger: Logger)
    {
        self.root = root
        self.layout = layout
        self.what = what
        self.keyOf = key
        self.logger = logger
    }

    public func directory(for key: String) -> String { root + "/" + key }

    private func file(for key: String) -> String {
        switch layout {
        case .directoryPerRecord(let fileName): directory(for: key) + "/" + fileName
        case .filePerRecord: root + "/" + key + ".json"
        }
    }

    public func save(_ record: Record) throws(CocoonError) {
        let key = keyOf(record)
        let path = file(for: key)
        do {
            try FileManager.default.createDirectory(
                atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true,
                attributes: [.posixPermissions: 0o700])
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            encoder.dateEncodingStrategy = .iso8601
            try AtomicFile.write(try encoder.encode(record), to: path)
        } catch {
            throw .local("cannot persist \(what) \(key)", error)
        }
    }

    /// Deletes the record (with its directory and everything in it, in that layout).
    public func delete(_ key: String) throws(CocoonError) {
        let path: String
        switch layout {
        case .directoryPerRecord: path = directory(for: key)
        case .filePerRecord: path = file(for: key)
        }
        guard FileManager.default.fileExists(atPath: path) else { return }
        do {
            try FileManager.default.removeItem(atPath: path)
        } catch {
            throw .local("cannot remove state of \(what) \(key)", error)
        }
    }

    /// Every persisted record, in key order.
    public func loadAll() -> [Record] {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: root)
        } catch {
            return []  // no records saved yet: the directory is made by the first save
        }
        var records: [Record] = []
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        for name in names.sorted() where !name.hasPrefix(".") {
            let path: String
            switch layout {
            case .directoryPerRecord: path = file(for: name)
            case .filePerRecord:
                guard name.hasSuffix(".json") else { continue }
                path = root + "/" + name
            }
            guard let data = FileManager.default.contents(atPath: path) else { continue }
            do {
                records.append(try decoder.decode(Record.self, from: data))
            } catch {
                logger.error(
                    "unreadable \(what) state file, moved aside", metadata: ["file": "\(path)", "error": "\(error)"])
                if rename(path, path + ".corrupt") != 0 {
                    logger.error(
                        "cannot move the unreadable file aside", metadata: ["file": "\(path)", "errno": "\(errno)"])
                }
            }
        }
        return records
    }
}
