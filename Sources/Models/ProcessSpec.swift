/// One process: the container's own or an exec into it. The host keeps it with the container's
/// record (ExecSync reuses its env, user and capabilities) and sends it through the agent.
public struct ProcessSpec: Sendable, Equatable, Codable {
    public var args: [String]
    public var env: [String] = []
    public var workingDir: String = "/"
    public var user = UserSpec()
    /// The capabilities the process keeps (bounding, permitted, effective and inheritable sets).
    public var capabilities: Set<Capability> = Capability.defaultSet
    public var noNewPrivileges = false
    public var seccomp: SeccompProfile = .unconfined

    public init(args: [String]) { self.args = args }

    public init(
        args: [String], env: [String], workingDir: String, user: UserSpec, capabilities: Set<Capability>,
        noNewPrivileges: Bool, seccomp: SeccompProfile
    ) {
        self.args = args
        self.env = env
        self.workingDir = workingDir
        self.user = user
        self.capabilities = capabilities
        self.noNewPrivileges = noNewPrivileges
        self.seccomp = seccomp
    }
}

/// Who the process runs as: a numeric uid, or a name looked up in the container's /etc/passwd;
/// a group likewise (default: the user's primary group), plus supplementary groups.
public struct UserSpec: Sendable, Equatable, Codable {
    public var uid: UInt32?
    public var username: String?
    public var gid: UInt32?
    public var groupname: String?
    public var supplementaryGroups: [UInt32] = []

    public init(
        uid: UInt32? = nil, username: String? = nil, gid: UInt32? = nil, groupname: String? = nil,
        supplementaryGroups: [UInt32] = []
    ) {
        self.uid = uid
        self.username = username
        self.gid = gid
        self.groupname = groupname
        self.supplementaryGroups = supplementaryGroups
    }
}
