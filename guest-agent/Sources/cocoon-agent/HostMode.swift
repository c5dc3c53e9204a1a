import CAgentSys
import Glibc

/// How this agent was started: as PID 1 of a pod VM (no arguments), or by cocoond on the host as
/// the agent of a native pod (`cocoon-agent host --socket S --token-file T --cgroup-root C
/// --pod-dir P [--shared-dir D] [--netns N] [--host-pid] [--host-ipc] --name cocoon-<id>`). On the
/// host it holds the pod's network, IPC and UTS namespaces (the node's network and IPC when asked;
/// containers then share the node's PIDs) and a mount namespace of its own (host mounts reach it),
/// listens on a Unix socket only root may use, reads its token from a file, keeps its working
/// files under the pod's directory, and leaves the host's own setup (mounts, modules, power) alone.
struct HostMode: Sendable {
    /// The Unix socket cocoond connects to (made 0600 here, in a 0700 directory of cocoond's).
    let socket: String
    /// The 0600 file with the pod's agent token.
    let tokenFile: String
    /// The pod's cgroup directory (under /sys/fs/cgroup): each container's cgroup goes below it.
    let cgroupRoot: String
    /// A directory of the pod's own on the host's disk, where the agent keeps what a VM keeps under
    /// /run/cocoon: the containers' overlay uppers, generated files and the pod's identity files.
    let podDir: String
    /// The pod's shared directory (its volumes' binds, made by cocoond), where a VM mounts virtio-fs.
    let sharedDir: String?
    /// The pod's network namespace (CNI), or nil for the host's network (a hostNetwork pod).
    let netns: String?
    /// The pod's containers are in the node's PID namespace (hostPID), not each in its own.
    var hostPID = false
    /// The pod keeps the node's IPC namespace (hostIPC).
    var hostIPC = false

    /// This process's mode, from its arguments (nil: a VM's agent). Bad arguments end the process.
    static let current: HostMode? = {
        let args = Array(CommandLine.arguments.dropFirst())
        guard args.first == "host" else { return nil }
        switch parse(Array(args.dropFirst())) {
        case .success(let mode): return mode
        case .failure(let error):
            log("cocoon-agent host: \(error.message)")
            exit(2)
        }
    }()

    /// Where the agent's working files go: the pod's directory on the host, /run/cocoon in a VM.
    static var runDir: String { current?.podDir ?? "/run/cocoon" }

    struct UsageError: Error { let message: String }

    static func parse(_ args: [String]) -> Result<HostMode, UsageError> {
        var values: [String: String] = [:]
        let flags: Set = ["--host-pid", "--host-ipc"]
        let given = Set(args.filter { flags.contains($0) })
        let args = args.filter { !flags.contains($0) }
        var i = 0
        let known: Set = [
            "--socket", "--token-file", "--cgroup-root", "--pod-dir", "--shared-dir", "--netns", "--name",
        ]
        while i < args.count {
            guard known.contains(args[i]), i + 1 < args.count, args[i + 1].hasPrefix("/") || args[i] == "--name"
            else {
                return .failure(UsageError(message: "unexpected argument \"\(args[i])\" (options take absolute paths)"))
            }
            values[args[i]] = args[i + 1]
            i += 2
        }
        for required in ["--socket", "--token-file", "--cgroup-root", "--pod-dir"] where values[required] == nil {
            return .failure(UsageError(message: "\(required) is required"))
        }
        guard let cgroup = values["--cgroup-root"], cgroup.hasPrefix("/sys/fs/cgroup/"), !cgroup.contains("/../") else {
            return .failure(UsageError(message: "--cgroup-root must be a directory under /sys/fs/cgroup"))
        }
        var mode = HostMode(
            socket: values["--socket"] ?? "", tokenFile: values["--token-file"] ?? "", cgroupRoot: cgroup,
            podDir: values["--pod-dir"] ?? "", sharedDir: values["--shared-dir"], netns: values["--netns"])
        mode.hostPID = given.contains("--host-pid")
        mode.hostIPC = given.contains("--host-ipc")
        return .success(mode)
    }

    /// Listens on the socket (in the host's mount namespace, where cocoond finds it), then enters
    /// the pod's namespaces. Runs first, while the process has one thread (unshare needs that).
    func enter() throws -> Int32 {
        let listenFD = try listen()
        var step: UnsafePointer<CChar>?
        let rc = cocoon_enter_pod(netns, hostIPC ? 1 : 0, &step)
        guard rc == 0 else {
            close(listenFD)
            throw SystemError(step.map { String(cString: $0) } ?? "enter the pod", -rc)
        }
        mkdirs(podDir)
        return listenFD
    }

    /// A Unix stream socket at `socket`, 0600 from the start (the umask is set before bind).
    private func listen() throws -> Int32 {
        unlink(socket)
        let fd = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemError("socket") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(socket.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            close(fd)
            throw SystemError("socket path \(socket) is too long", ENAMETOOLONG)
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
        }
        let old = umask(0o177)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        umask(old)
        guard bound == 0, Glibc.listen(fd, 4) == 0 else {
            let error = SystemError("listen on \(socket)")
            close(fd)
            throw error
        }
        return fd
    }

    /// Accepts a connection from root only (cocoond); anyone else is closed before a byte is read.
    static func acceptRoot(_ listenFD: Int32) -> Int32 {
        var uid: UInt32 = 0
        var pid: Int32 = 0
        let conn = cocoon_accept_root(listenFD, &uid, &pid)
        if conn == -2 { log("refused a connection from uid \(uid) (pid \(pid)): only root's cocoond may connect") }
        return max(conn, -1)
    }

    /// The token file's bytes, or nil (every session is then refused).
    func readToken(count: Int) -> [UInt8]? {
        guard let bytes = readSmallBytes(tokenFile, limit: count + 1), bytes.count == count else {
            log("the agent token file \(tokenFile) is missing or not \(count) bytes: every session will be refused")
            return nil
        }
        return bytes
    }
}
