import CContainerCore
import Glibc
import Models
import SystemFiles

/// Starts container processes: the first process of a container (new mount, PID, IPC and UTS
/// namespaces; the network namespace is shared with the pod), and processes exec'd into a running
/// container (joining its namespaces). The work between clone and execve is `ccore_spawn` (C);
/// this side prepares the root filesystem's mount points, the identity and the cgroup, and turns a
/// failure reported by the new process into a `ContainerCoreError`.
public enum ContainerLauncher {
    /// Standard streams for the new process: fds the caller owns (they stay open here), -1 for /dev/null.
    /// `terminal`: `input` is a terminal that becomes the process's controlling terminal (new session).
    /// `console` (a container's first process): a socket on which the process sends the master of a
    /// terminal it opens in the container's own devpts, once that exists; the terminal is then its
    /// stdio and controlling terminal, and `receiveTerminal` gets the master.
    public struct Stdio: Sendable {
        public var input: Int32, output: Int32, error: Int32
        public var terminal: Bool
        public var console: Int32
        public init(
            input: Int32 = -1, output: Int32 = -1, error: Int32 = -1, terminal: Bool = false, console: Int32 = -1
        ) {
            self.input = input
            self.output = output
            self.error = error
            self.terminal = terminal
            self.console = console
        }
    }

    /// The terminal master a process started with `Stdio.console` sent (it has, once `start`
    /// returned): close-on-exec, owned by the caller.
    public static func receiveTerminal(_ console: Int32) throws(ContainerCoreError) -> Int32 {
        let fd = ccore_recv_fd(console)
        guard fd >= 0 else { throw .errno("receive the container's terminal") }
        return fd
    }

    /// Starts the container's first process; returns its pid.
    public static func start(_ spec: ContainerSpec, stdio: Stdio, cgroup: Cgroup?) throws(ContainerCoreError) -> Int32 {
        guard spec.rootfs.hasPrefix("/") else {
            throw .invalidSpec("rootfs must be an absolute path, got \"\(spec.rootfs)\"")
        }
        var st = stat()
        guard stat(spec.rootfs, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else {
            throw .notFound("root filesystem \(spec.rootfs) is not a directory")
        }
        let user = try UserResolver.resolve(spec.process.user, rootfs: spec.rootfs)
        for dir in ["/proc", "/sys"] { _ = try SafePath.makeDirectories(root: spec.rootfs, dir) }
        let devDir = try SafePath.makeDirectories(root: spec.rootfs, "/dev")
        // A privileged container's devices first, over its fresh /dev (made in the new process);
        // its own mounts below /dev come after them and win.
        let devices = spec.allDevices ? HostDevices.nodes() : []
        let mounts =
            devices.map { (Mount(source: "/dev/" + $0, destination: "/dev/" + $0), devDir + "/" + $0, true) }
            + (try mountPoints(spec))
        let workingDir = spec.process.workingDir.isEmpty ? "/" : spec.process.workingDir
        // try?: a bad working dir fails at chdir, with its error
        _ = try? SafePath.makeDirectories(root: spec.rootfs, workingDir)
        return try launch(spec.process, user: user, cgroup: cgroup) { arena, c in
            c.new_namespaces = 1
            c.share_ipc = spec.newIPCNamespace ? 0 : 1
            c.share_pid = spec.newPIDNamespace ? 0 : 1
            c.join_pidns_of = spec.newPIDNamespace ? 0 : (spec.pidNamespaceOf ?? 0)
            c.rootfs = arena.string(spec.rootfs)
            c.readonly_rootfs = spec.readOnlyRootfs ? 1 : 0
            c.setup_dev = 1
            c.mount_proc_sys = 1
            c.hostname = spec.hostname.map { arena.string($0) }
            c.mounts = cMounts(mounts, arena)
            c.n_mounts = Int32(mounts.count)
            c.masked_paths = arena.strings(spec.maskedPaths)
            c.n_masked = Int32(spec.maskedPaths.count)
            c.readonly_paths = arena.strings(spec.readonlyPaths)
            c.n_readonly = Int32(spec.readonlyPaths.count)
            c.cwd = arena.string(workingDir)
            c.stdio = (stdio.input, stdio.output, stdio.error)
            c.controlling_tty = stdio.terminal || stdio.console >= 0 ? 1 : 0
            c.console_socket = stdio.console
        }
    }

    /// Checks the spec's mounts and creates their mount points in the root filesystem: each mount
    /// with its target there and whether that is a file (a bind mount of a non-directory).
    private static func mountPoints(_ spec: ContainerSpec) throws(ContainerCoreError) -> [(Mount, String, Bool)] {
        var mounts: [(Mount, String, Bool)] = []
        for mount in spec.mounts {
            guard mount.destination.hasPrefix("/") else {
                throw .invalidSpec("mount destination must be absolute, got \"\(mount.destination)\"")
            }
            var isFile = false
            if mount.type == nil {
                var source = stat()
                guard stat(mount.source, &source) == 0 else {
                    throw .notFound("mount source \(mount.source) does not exist")
                }
                isFile = (source.st_mode & S_IFMT) != S_IFDIR
            }
            let target =
                isFile
                ? try SafePath.makeFile(root: spec.rootfs, mount.destination)
                : try SafePath.makeDirectories(root: spec.rootfs, mount.destination)
            mounts.append((mount, target, isFile))
        }
        return mounts
    }

    /// The mounts as the C array `ccore_spawn` takes, allocated in `arena`.
    private static func cMounts(_ mounts: [(Mount, String, Bool)], _ arena: CArena) -> UnsafePointer<ccore_mount> {
        let cMounts = arena.allocate(ccore_mount.self, count: mounts.count)
        for (i, (mount, target, isFile)) in mounts.enumerated() {
            var m = ccore_mount()
            m.source = arena.string(mount.source)
            m.target = arena.string(target)
            m.fstype = mount.type.map { arena.string($0) }
            m.data = mount.data.map { arena.string($0) }
            m.bind = mount.type == nil ? 1 : 0
            m.readonly = mount.readOnly ? 1 : 0
            m.flags = mount.flags
            m.target_is_file = isFile ? 1 : 0
            cMounts[i] = m
        }
        return UnsafePointer(cMounts)
    }

    /// Starts `process` inside the running container whose first process is `containerPid`.
    public static func exec(
        _ process: ProcessSpec, into containerPid: Int32, rootfs: String, stdio: Stdio, cgroup: Cgroup?
    ) throws(ContainerCoreError) -> Int32 {
        guard kill(containerPid, 0) == 0 else {
            throw .notFound("the container's process \(containerPid) is not running")
        }
        let user = try UserResolver.resolve(process.user, rootfs: rootfs)
        return try launch(process, user: user, cgroup: cgroup) { arena, c in
            c.join_pid = containerPid
            c.cwd = arena.string(process.workingDir.isEmpty ? "/" : process.workingDir)
            c.stdio = (stdio.input, stdio.output, stdio.error)
            c.controlling_tty = stdio.terminal ? 1 : 0
        }
    }

    /// Spawns `process` (the work between clone and execve is `ccore_spawn`, in C: no Swift code runs
    /// in the new process), puts it in `cgroup`, lets it go on, and waits for its setup's outcome.
    private static func launch(
        _ process: ProcessSpec, user: ResolvedUser, cgroup: Cgroup?, configure: (CArena, inout ccore_spawn) -> Void
    ) throws(ContainerCoreError) -> Int32 {
        guard !process.args.isEmpty, !process.args[0].isEmpty else { throw .invalidSpec("process args are empty") }
        let env = environment(process.env, home: user.home)
        let pathEnv = env.last(where: { $0.hasPrefix("PATH=") }).map { String($0.dropFirst(5)) }

        let filter = try Seccomp.compile(process.seccomp, capabilities: process.capabilities)
        var sync: [Int32] = [-1, -1]
        var report: [Int32] = [-1, -1]
        guard ccore_pipe(&sync) == 0 else { throw .errno("pipe") }
        guard ccore_pipe(&report) == 0 else {
            close(sync[0])
            close(sync[1])
            throw .errno("pipe")
        }
        let arena = CArena()
        var c = ccore_spawn()
        c.stdio = (-1, -1, -1)
        c.console_socket = -1
        configure(arena, &c)
        c.argv = arena.strings(process.args)
        c.envp = arena.strings(env)
        c.path_env = pathEnv.map { arena.string($0) }
        try describe(process, user: user, filter: filter, in: &c, arena: arena)
        c.sync_fd = sync[0]
        c.error_fd = report[1]

        let pid = withUnsafePointer(to: &c) { ccore_spawn($0) }
        let spawnErrno = errno
        close(sync[0])
        close(report[1])
        guard pid > 0 else {
            close(sync[1])
            close(report[0])
            throw .errno("clone", spawnErrno)
        }
        try join(cgroup, pid: pid, sync: sync[1], report: report[0])
        try release(pid, sync: sync[1], report: report[0])
        return pid
    }

    /// The process's environment, with a default PATH and its user's HOME where it sets none.
    private static func environment(_ processEnv: [String], home: String) -> [String] {
        var env = processEnv
        if !env.contains(where: { $0.hasPrefix("PATH=") }) {
            env.append("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        }
        if !env.contains(where: { $0.hasPrefix("HOME=") }) { env.append("HOME=\(home)") }
        return env
    }

    /// Fills in the identity, capabilities and seccomp filter the new process takes on.
    private static func describe(
        _ process: ProcessSpec, user: ResolvedUser, filter: [UInt8]?, in c: inout ccore_spawn, arena: CArena
    ) throws(ContainerCoreError) {
        c.uid = user.uid
        c.gid = user.gid
        let groups = arena.allocate(gid_t.self, count: user.groups.count)
        for (i, g) in user.groups.enumerated() { groups[i] = g }
        c.groups = UnsafePointer(groups)
        c.n_groups = Int32(user.groups.count)
        c.last_cap = Int32(lastCapability())
        c.capabilities = Capability.mask(process.capabilities)
        // Every capability (a privileged container) is every one this process may give, as
        // containerd gives its own set: a node, or a sandbox around one, may lack some, and asking
        // for those fails the start (EPERM). An explicit list is given as asked.
        if process.capabilities == Capability.all { c.capabilities &= ccore_bounding_set(c.last_cap) }
        c.no_new_privs = process.noNewPrivileges ? 1 : 0
        if let filter {
            let program = filter.withUnsafeBytes { ccore_seccomp_program($0.baseAddress, $0.count) }
            guard let program else { throw .system("out of memory for the seccomp filter") }
            arena.adopt(program)
            c.seccomp_filter = UnsafeRawPointer(program)
        }
    }

    /// Puts the new process (still waiting on `sync`) in `cgroup`; on failure kills and reaps it and
    /// closes the parent's pipe ends.
    private static func join(_ cgroup: Cgroup?, pid: Int32, sync: Int32, report: Int32) throws(ContainerCoreError) {
        guard let cgroup else { return }
        do {
            try cgroup.add(pid: pid)
        } catch {
            close(sync)
            close(report)
            kill(pid, SIGKILL)
            var status: Int32 = 0
            // blocking: a synchronous launcher (the agent's own thread; a host caller uses OffPool)
            waitpid(pid, &status, 0)
            throw error
        }
    }

    /// Lets the new process go on and reads its setup report (empty once it exec'd): a failure it
    /// reported, after it is reaped, becomes the error thrown.
    private static func release(_ pid: Int32, sync: Int32, report: Int32) throws(ContainerCoreError) {
        var go: UInt8 = 1
        _ = write(sync, &go, 1)
        close(sync)
        let message = FileText.readAll(report)
        close(report)
        if !message.isEmpty {
            var status: Int32 = 0
            // blocking: a synchronous launcher (the agent's own thread; a host caller uses OffPool)
            waitpid(pid, &status, 0)
            let lines = message.split(separator: "\n", omittingEmptySubsequences: false)
            let step = String(lines.first ?? "setup")
            let code = lines.count > 1 ? Int32(lines[1]) ?? 0 : 0
            if code == ENOENT && step.hasPrefix("exec") {
                throw .notFound("\(step): \(String(cString: strerror(code)))")
            }
            throw .setupFailed(step: step, errno: code)
        }
    }

    static func lastCapability() -> Int {
        FileText.read("/proc/sys/kernel/cap_last_cap").flatMap { Int($0.split(separator: "\n").first ?? "") } ?? 40
    }
}

/// Owns the C strings and arrays handed to `ccore_spawn` and frees them when done.
final class CArena {
    private var blocks: [UnsafeMutableRawPointer] = []
    private var cBlocks: [UnsafeMutableRawPointer] = []

    func string(_ s: String) -> UnsafePointer<CChar> {
        let bytes = Array(s.utf8CString)
        let p = allocate(CChar.self, count: bytes.count)
        p.initialize(from: bytes, count: bytes.count)
        return UnsafePointer(p)
    }

    /// A NULL-terminated array of C strings.
    func strings(_ list: [String]) -> UnsafePointer<UnsafePointer<CChar>?> {
        let array = allocate(UnsafePointer<CChar>?.self, count: list.count + 1)
        for (i, s) in list.enumerated() { array[i] = string(s) }
        array[list.count] = nil
        return UnsafePointer(array)
    }

    /// Takes ownership of memory allocated by C (malloc).
    func adopt(_ pointer: UnsafeMutableRawPointer) { cBlocks.append(pointer) }

    func allocate<T>(_ type: T.Type, count: Int) -> UnsafeMutablePointer<T> {
        let p = UnsafeMutablePointer<T>.allocate(capacity: max(count, 1))
        blocks.append(UnsafeMutableRawPointer(p))
        return p
    }

    deinit {
        for block in blocks { block.deallocate() }
        for block in cBlocks { free(block) }
    }
}
