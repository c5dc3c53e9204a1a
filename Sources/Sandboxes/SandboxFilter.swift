/// The ListPodSandbox filter, CRI-agnostic: id (full or unique prefix), state, and a label selector
/// in which every key/value must match.
public struct SandboxFilter: Sendable, Equatable {
    public var id: String?
    public var ready: Bool?
    public var labels: [String: String]

    public init(id: String? = nil, ready: Bool? = nil, labels: [String: String] = [:]) {
        self.id = id
        self.ready = ready
        self.labels = labels
    }

    public func matches(_ record: SandboxRecord) -> Bool {
        if let id, !id.isEmpty, !record.id.hasPrefix(id) { return false }
        if let ready, (record.state == .ready) != ready { return false }
        for (key, value) in labels where record.labels[key] != value { return false }
        return true
    }
}
