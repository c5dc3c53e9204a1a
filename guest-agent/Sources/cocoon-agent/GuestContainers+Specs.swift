import AgentAPI
import AgentService
import ContainerCore
import Models

/// The host's request messages as ContainerCore specs, and the checks on what they name.
extension GuestContainers {
    /// The host's resource limits as a cgroup's `Resources`.
    static func resources(_ r: Cocoon_Agent_V4_Resources) -> Resources {
        Resources(
            memoryLimitBytes: r.memoryLimitBytes, pidsLimit: r.pidsLimit, cpuQuotaMicros: r.cpuQuotaMicros,
            cpuPeriodMicros: r.cpuPeriodMicros, cpuShares: r.cpuShares)
    }

    /// "/etc//hosts/" -> "/etc/hosts": a mount destination as a path to compare.
    static func normalized(_ path: String) -> String {
        "/" + path.split(separator: "/").filter { $0 != "." }.joined(separator: "/")
    }

    /// Checks an id the host chose (it names directories and cgroups): 1-128 letters, digits, '-', '_'
    /// or '.', never "." or "..".
    /// Masked and read-only paths are absolute, without "..". A log path too, and only for a native
    /// pod's agent (a VM cannot reach the node's files).
    static func checkPaths(_ r: Cocoon_Agent_V4_CreateContainerRequest) throws(AgentFailure) {
        for path in r.maskedPaths + r.readonlyPaths
        where !path.hasPrefix("/") || path.split(separator: "/").contains("..") {
            throw .invalid("masked or read-only path \"\(path)\" must be absolute, without \"..\"")
        }
        guard !r.logPath.isEmpty else { return }
        guard HostMode.current != nil else { throw .invalid("log_path: a pod VM's agent does not write host files") }
        guard r.logPath.hasPrefix("/"), !r.logPath.split(separator: "/").contains("..") else {
            throw .invalid("log_path \"\(r.logPath)\" must be absolute, without \"..\"")
        }
    }

    static func validateID(_ id: String, field: String) throws(AgentFailure) {
        guard !id.isEmpty, id.count <= 128,
            id.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }), id != ".", id != ".."
        else {
            throw .invalid("\(field) \"\(id)\" must be 1-128 letters, digits, '-', '_' or '.'")
        }
    }

    /// The host's process message as a `ProcessSpec`; an unknown capability is refused.
    static func process(_ p: Cocoon_Agent_V4_Process) throws(AgentFailure) -> ProcessSpec {
        guard !p.args.isEmpty else { throw .invalid("process.args is empty") }
        var spec = ProcessSpec(args: p.args)
        spec.env = p.env
        spec.workingDir = p.workingDir.isEmpty ? "/" : p.workingDir
        spec.user = UserSpec(
            uid: p.user.hasUid ? p.user.uid : nil, username: p.user.username.isEmpty ? nil : p.user.username,
            gid: p.user.hasGid ? p.user.gid : nil, groupname: p.user.groupname.isEmpty ? nil : p.user.groupname,
            supplementaryGroups: p.user.supplementaryGroups)
        var caps = Set<Capability>()
        for name in p.capabilities {
            guard let cap = Capability(name: name) else {
                throw .invalid("process.capabilities: unknown capability \"\(name)\"")
            }
            caps.insert(cap)
        }
        spec.capabilities = caps
        spec.noNewPrivileges = p.noNewPrivileges
        switch p.seccomp.kind {
        case .runtimeDefault: spec.seccomp = .runtimeDefault
        case .profile: spec.seccomp = .json(p.seccomp.profile)
        default: spec.seccomp = .unconfined
        }
        return spec
    }
}
