import Errors

/// Which sysctls a pod may set: those the kernel keeps per namespace, as the kubelet and runc allow
/// them (IPC: SysV limits and POSIX message queues; network: `net.*`), since in a VM pod they are
/// written into the guest's namespaces, which are the pod's. Anything else is INVALID_ARGUMENT.
enum Sysctls {
    static let ipcKeys: Set<String> = [
        "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced",
        "kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
    ]
    /// `net.*` keys that are global in Linux despite the prefix.
    static let globalNetKeys: Set<String> = [
        "net.core.rmem_max", "net.core.wmem_max", "net.core.optmem_max", "net.core.netdev_max_backlog",
    ]

    /// Checks every key and value of `PodSandboxConfig.linux.sysctls`; keys may use '/' for '.'.
    static func validate(_ sysctls: [String: String]) throws(CocoonError) -> [String: String] {
        guard sysctls.count <= 256 else {
            throw .invalidArgument("config.linux.sysctls has \(sysctls.count) entries (at most 256)")
        }
        for (key, value) in sysctls {
            let dotted = key.contains("/") ? String(key.map { $0 == "/" ? "." : $0 }) : key
            guard !key.isEmpty, key.utf8.count <= 256,
                key.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "._-/".contains($0)) }),
                !dotted.split(separator: ".", omittingEmptySubsequences: false).contains(where: { $0.isEmpty })
            else {
                throw .invalidArgument("config.linux.sysctls: \"\(key)\" is not a sysctl name")
            }
            guard value.utf8.count <= 4096, !value.contains("\0"), !value.contains("\n") else {
                throw .invalidArgument(
                    "config.linux.sysctls: the value of \(key) must be one line of at most 4096 bytes")
            }
            guard isNamespaced(dotted) else {
                throw .invalidArgument(
                    "config.linux.sysctls: \(key) is not a namespaced sysctl (allowed: "
                        + "\(ipcKeys.sorted().joined(separator: ", ")), fs.mqueue.*, net.*)"
                )
            }
        }
        return sysctls
    }

    static func isNamespaced(_ key: String) -> Bool {
        if ipcKeys.contains(key) || key.hasPrefix("fs.mqueue.") { return true }
        return key.hasPrefix("net.") && !globalNetKeys.contains(key)
    }
}
