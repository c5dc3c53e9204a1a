import Foundation
import Logging
import StateFiles

/// Owns one kind of persisted record on disk: one directory per record under `root`, holding the
/// record as JSON (written atomically: temp file, fsync, rename) beside the record's other files
/// (a VM's console log).
public actor JSONRecordStore<Record: Codable & Sendable> {
    public let root: String
    private let fileName: String
    private let idOf: @Sendable (Record) -> String
    private let logger: Logger

    public init(root: String, fileName: String, id: @escaping @Sendable (Record) -> String, logger: Logger) {
        self.root = root
        self.fileName = fileName
        self.idOf = id
        self.logger = logger
    }

    public nonisolated func directory(for id: String) -> String { root + "/" + id }

    public func save(_ record: Record) throws {
        let dir = directory(for: idOf(record))
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(try encoder.encode(record), to: dir + "/" + fileName)
    }

    /// Deletes the record's directory and everything in it.
    public func delete(_ id: String) throws {
        let dir = directory(for: id)
        if FileManager.default.fileExists(atPath: dir) {
            try FileManager.default.removeItem(atPath: dir)
        }
    }

    /// Every persisted record. A file that does not parse is moved aside (never deleted) and logged.
    public func loadAll() -> [Record] {
        guard let ids = try? FileManager.default.contentsOfDirectory(atPath: root) else { return [] }
        var records: [Record] = []
        for id in ids.sorted() where !id.hasPrefix(".") {
            let file = directory(for: id) + "/" + fileName
            guard let data = FileManager.default.contents(atPath: file) else { continue }
            do {
                records.append(try JSONDecoder().decode(Record.self, from: data))
            } catch {
                logger.error("unreadable state file, moved aside", metadata: ["file": "\(file)", "error": "\(error)"])
                try? FileManager.default.moveItem(atPath: file, toPath: file + ".corrupt")
            }
        }
        return records
    }
}

/// Sandboxes under `<state_root>/sandboxes/<id>/sandbox.json`.
public typealias SandboxStore = JSONRecordStore<SandboxRecord>

extension JSONRecordStore where Record == SandboxRecord {
    public init(stateRoot: String, logger: Logger = Logger(label: "cocoon.store")) {
        self.init(root: stateRoot + "/sandboxes", fileName: "sandbox.json", id: { $0.id }, logger: logger)
    }
}

/// Containers under `<state_root>/containers/<id>/container.json`.
public typealias ContainerStore = JSONRecordStore<ContainerRecord>

extension JSONRecordStore where Record == ContainerRecord {
    public init(stateRoot: String, logger: Logger = Logger(label: "cocoon.store")) {
        self.init(root: stateRoot + "/containers", fileName: "container.json", id: { $0.id }, logger: logger)
    }
}
