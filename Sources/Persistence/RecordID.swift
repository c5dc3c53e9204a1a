import Errors

/// Ids of persisted records: minted like containerd's (64 hex characters, unique in their first 16,
/// the length of run directory names) and found again from a full id or a unique prefix, as crictl
/// lets users type them.
public enum RecordID {
    public static func make(taken: (String) -> Bool) -> String {
        var rng = SystemRandomNumberGenerator()
        while true {
            var id = ""
            for _ in 0..<4 {
                let part = String(rng.next() as UInt64, radix: 16)
                id += String(repeating: "0", count: 16 - part.count) + part
            }
            if !taken(String(id.prefix(16))) { return id }
        }
    }

    /// The full id of `idOrPrefix` among `ids`; `what` and `field` name them in errors.
    public static func resolve(
        _ idOrPrefix: String, in ids: some Collection<String>, what: String, field: String
    ) throws(CocoonError) -> String {
        guard !idOrPrefix.isEmpty else { throw .invalidArgument("\(field) must not be empty") }
        if ids.contains(idOrPrefix) { return idOrPrefix }
        let matches = ids.filter { $0.hasPrefix(idOrPrefix) }
        if matches.count == 1, let only = matches.first { return only }
        if matches.count > 1 { throw .invalidArgument("\(what) id prefix \"\(idOrPrefix)\" is ambiguous") }
        throw .notFound("\(what) \"\(idOrPrefix)\" not found")
    }

    /// Like `resolve`, but nil where the id matches nothing (idempotent stop and remove).
    public static func resolveIfKnown(
        _ idOrPrefix: String, in ids: some Collection<String>, what: String, field: String
    ) throws(CocoonError) -> String? {
        do {
            return try resolve(idOrPrefix, in: ids, what: what, field: field)
        } catch  where error.code == .notFound {
            return nil
        }
    }
}
