/// Linux capabilities by number, with the names CRI and OCI use (`CAP_` prefix optional).
public struct Capability: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let number: Int

    public init?(number: Int) {
        guard Capability.names.indices.contains(number) else { return nil }
        self.number = number
    }

    /// Parses "CAP_NET_ADMIN", "NET_ADMIN" or "net_admin".
    public init?(name: String) {
        var upper = name.uppercased()
        if upper.hasPrefix("CAP_") { upper.removeFirst(4) }
        guard let index = Capability.names.firstIndex(of: upper) else { return nil }
        self.number = index
    }

    public var description: String { "CAP_" + Capability.names[number] }
    public static func < (a: Capability, b: Capability) -> Bool { a.number < b.number }

    /// Index = capability number (linux/capability.h).
    static let names = [
        "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
        "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
        "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
        "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
        "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF",
        "CHECKPOINT_RESTORE",
    ]

    public static let all = Set(names.indices.compactMap { Capability(number: $0) })

    /// The set containerd and CRI-O give a container unless told otherwise.
    public static let defaultSet: Set<Capability> = Set(
        [
            "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID", "SETFCAP", "SETPCAP",
            "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
        ].compactMap { Capability(name: $0) })

    /// The bit mask of a set (bit n = capability n).
    public static func mask(_ set: Set<Capability>) -> UInt64 {
        set.reduce(0) { $0 | (1 << UInt64($1.number)) }
    }
}

/// Kept by name (`CAP_SYS_ADMIN`) in persisted records.
extension Capability: Codable {
    public init(from decoder: any Decoder) throws {
        let name = try decoder.singleValueContainer().decode(String.self)
        guard let capability = Capability(name: name) else {
            throw DecodingError.dataCorrupted(
                .init(codingPath: decoder.codingPath, debugDescription: "unknown capability \(name)"))
        }
        self = capability
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}
