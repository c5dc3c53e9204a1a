import Foundation
import Logging
import StateFiles

/// Owns the on-disk sandbox state: one directory per sandbox under `<state_root>/sandboxes/`,
/// holding `sandbox.json` (written atomically: temp file, fsync, rename) and the VM's console log.
public actor SandboxStore {
    public let root: String
    private let logger: Logger

    public init(stateRoot: String, logger: Logger = Logger(label: "cocoon.store")) {
        self.root = stateRoot + "/sandboxes"
        self.logger = logger
    }

    public nonisolated func directory(for id: String) -> String { root + "/" + id }

    public func save(_ record: SandboxRecord) throws {
        let dir = directory(for: record.id)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try encoder.encode(record)
        try AtomicFile.write(data, to: dir + "/sandbox.json")
    }

    /// Deletes the sandbox's directory and everything in it.
    public func delete(_ id: String) throws {
        let dir = directory(for: id)
        if FileManager.default.fileExists(atPath: dir) {
            try FileManager.default.removeItem(atPath: dir)
        }
    }

    /// Every persisted sandbox. A file that does not parse is moved aside (never deleted) and logged.
    public func loadAll() -> [SandboxRecord] {
        guard let ids = try? FileManager.default.contentsOfDirectory(atPath: root) else { return [] }
        var records: [SandboxRecord] = []
        for id in ids.sorted() where !id.hasPrefix(".") {
            let file = directory(for: id) + "/sandbox.json"
            guard let data = FileManager.default.contents(atPath: file) else { continue }
            do {
                records.append(try JSONDecoder().decode(SandboxRecord.self, from: data))
            } catch {
                logger.error("unreadable sandbox state, moved aside", metadata: ["file": "\(file)", "error": "\(error)"])
                try? FileManager.default.moveItem(atPath: file, toPath: file + ".corrupt")
            }
        }
        return records
    }
}
