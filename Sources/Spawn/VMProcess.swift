import CSpawn
import Foundation

/// Starts a VM's process (QEMU) the way a jailer does: in a session of its own, inside its cgroups,
/// as its own unprivileged user with no_new_privs, with a file size limit, an empty environment,
/// optionally in network, mount and PID namespaces of its own, and with only the descriptors it is given
/// (as 3, 4, 5, ... in `keep`'s order).
public enum VMProcess {
    public struct Launch: Sendable {
        public var uid: UInt32
        public var gid: UInt32
        public var groups: [UInt32]
        /// Descriptors the VM keeps; the child has keep[i] as descriptor 3 + i.
        public var keep: [Int32]
        /// Where its stdout and stderr go.
        public var output: Int32
        /// `cgroup.procs` files it joins before it runs.
        public var cgroupProcs: [String]
        /// RLIMIT_FSIZE (bytes); 0: unchanged.
        public var fileSizeLimit: UInt64
        /// In network, mount and PID namespaces of its own (QEMU: it needs no host network, mounts or
        /// processes; it is PID 1 of its namespace and its /proc shows only itself).
        public var isolate: Bool
        /// SIGPIPE ignored: writing to a `CappedLog` past its cap fails instead of killing the process.
        public var ignoreSIGPIPE: Bool
        /// No no_new_privs: for a process that stays root and runs containers (a native pod's agent).
        public var keepPrivileges: Bool
        /// The pin of a mount namespace it starts in (a pod's share: virtiofsd, a native agent).
        public var mountNamespace: String?

        public init(
            uid: UInt32, gid: UInt32, groups: [UInt32] = [], keep: [Int32], output: Int32, cgroupProcs: [String] = [],
            fileSizeLimit: UInt64 = 0, isolate: Bool = false, ignoreSIGPIPE: Bool = false, keepPrivileges: Bool = false
        ) {
            self.keepPrivileges = keepPrivileges
            self.isolate = isolate
            self.ignoreSIGPIPE = ignoreSIGPIPE
            self.uid = uid
            self.gid = gid
            self.groups = groups
            self.keep = keep
            self.output = output
            self.cgroupProcs = cgroupProcs
            self.fileSizeLimit = fileSizeLimit
        }

        /// The path by which the process opens keep[i] again: `/proc/self/fd/<3+i>`.
        public static func path(ofKept index: Int) -> String { "/proc/self/fd/\(3 + index)" }
    }

    /// Starts `argv` and returns its pid (it runs on; `HostProcess.isAlive` reaps it once it ends).
    public static func start(_ argv: [String], _ launch: Launch) throws -> Int32 {
        guard let path = argv.first else { throw POSIXError(.EINVAL) }
        var namespaceFD: Int32 = -1
        if let pin = launch.mountNamespace {
            namespaceFD = open(pin, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
            guard namespaceFD >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        }
        defer { if namespaceFD >= 0 { close(namespaceFD) } }
        var cargs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { for a in cargs { free(a) } }
        var cgroups: [UnsafePointer<CChar>?] = launch.cgroupProcs.map { UnsafePointer(strdup($0)) }
        defer { for c in cgroups { free(UnsafeMutablePointer(mutating: c)) } }
        var pid: pid_t = 0
        let rc = launch.keep.withUnsafeBufferPointer { keep in
            launch.groups.withUnsafeBufferPointer { groups in
                cgroups.withUnsafeMutableBufferPointer { cg in
                    var l = cocoon_vm_launch(
                        keep_fds: keep.baseAddress, keep_count: Int32(keep.count), out_fd: launch.output,
                        uid: launch.uid, gid: launch.gid, groups: groups.baseAddress, group_count: Int32(groups.count),
                        cgroup_procs: cg.baseAddress, cgroup_count: Int32(cg.count),
                        file_size_limit: launch.fileSizeLimit, isolate: launch.isolate ? 1 : 0,
                        ignore_sigpipe: launch.ignoreSIGPIPE ? 1 : 0, keep_privileges: launch.keepPrivileges ? 1 : 0,
                        mount_ns_fd: namespaceFD)
                    // An empty environment: nothing of the daemon's reaches the VM's process.
                    var noEnvironment: [UnsafeMutablePointer<CChar>?] = [nil]
                    return cocoon_spawn_vm(path, &cargs, &noEnvironment, &l, &pid)
                }
            }
        }
        guard rc == 0 else { throw POSIXError(POSIXErrorCode(rawValue: rc) ?? .EIO) }
        return pid
    }
}
