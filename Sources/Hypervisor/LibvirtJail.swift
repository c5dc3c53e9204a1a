import Foundation
import Persistence

/// The files a libvirt domain's QEMU reaches by path, set up for the VM's own user: in its run
/// directory (root's, 0711: QEMU may open what it names but neither list, add, rename nor remove
/// anything there) a copy of the agent token and virtiofsd's socket, both that user's alone (the agent
/// socket is libvirtd's, passed to QEMU as a descriptor); the state root stays the daemon's alone. The
/// console goes through virtlogd, which writes (as root) and rotates it: a guest cannot fill the disk.
enum LibvirtJail {
    /// Paths the domain definition names.
    struct Files: Sendable {
        var agentSocket: String
        var consoleLog: String
        var token: String?
        /// `<state_root>/vm-disks/<vm>`: the VM user's (0700), on the image store's filesystem.
        var diskDir: String
    }

    /// The VM's user must pass through every directory above its run and disk directories: throws,
    /// naming the first one it cannot (not searchable by others).
    static func checkPassable(_ spec: VMSpec) throws(HypervisorError) {
        for dir in [
            (spec.runDir as NSString).deletingLastPathComponent, (diskDir(spec) as NSString).deletingLastPathComponent,
        ] {
            var path = ""
            for component in dir.split(separator: "/") {
                path += "/" + component
                var st = stat()
                if stat(path, &st) == 0, st.st_mode & 0o001 == 0 {
                    throw .unavailable(
                        "\(spec.vmName): a libvirt VM runs as a user of its own and must pass through \(path) "
                            + "(mode \(String(st.st_mode & 0o777, radix: 8))) to its files under \(dir): "
                            + "make it searchable by others (chmod o+x) or move run_dir/state_root")
                }
            }
        }
    }

    /// `<state_root>/vm-disks/<vm>` (a pod's state directory is `<state_root>/sandboxes/<id>`).
    static func diskDir(_ spec: VMSpec) -> String {
        ((spec.stateDir as NSString).deletingLastPathComponent as NSString).deletingLastPathComponent
            + "/vm-disks/" + spec.vmName
    }

    /// Makes the VM's disk directory (its parent root's, 0711: passable, not listable).
    static func makeDiskDir(_ dir: String, user: VMUser) throws(HypervisorError) {
        let parent = (dir as NSString).deletingLastPathComponent
        do {
            try PassableDirectory.ensure(parent)
        } catch {
            throw .bootFailed("disk directory \(parent): \(error)")
        }
        // try?: a leftover of an earlier VM of this name is replaced
        try? FileManager.default.removeItem(atPath: dir)
        guard mkdir(dir, 0o700) == 0, chown(dir, user.uid, user.gid) == 0 else {
            throw .bootFailed("disk directory \(dir): \(String(cString: strerror(errno)))")
        }
    }

    /// A hard link to an image disk in the VM's disk directory (the image store's file itself stays
    /// out of the VM user's reach; the link is removed once QEMU has the file open).
    static func link(_ path: String, into dir: String, as serial: String) throws(HypervisorError) -> String {
        let link = dir + "/" + serial + ".img"
        unlink(link)
        guard Glibc.link(path, link) == 0 else {
            throw .deviceFailed("link \(path) into \(dir): \(String(cString: strerror(errno)))")
        }
        return link
    }

    static func prepare(spec: VMSpec, user: VMUser) throws(HypervisorError) -> Files {
        let files = Files(
            agentSocket: spec.runDir + "/agent.sock", consoleLog: spec.stateDir + "/console.log",
            token: spec.agentTokenFile == nil ? nil : spec.runDir + "/token",
            diskDir: diskDir(spec))
        guard chown(spec.runDir, 0, 0) == 0, chmod(spec.runDir, 0o711) == 0 else {
            throw .bootFailed("\(spec.vmName): run directory \(spec.runDir): \(String(cString: strerror(errno)))")
        }
        if let source = spec.agentTokenFile, let copy = files.token {
            guard let token = FileManager.default.contents(atPath: source) else {
                throw .bootFailed("\(spec.vmName): cannot read the agent token \(source)")
            }
            unlink(copy)
            let fd = open(copy, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o400)
            guard fd >= 0 else {
                throw .bootFailed("\(spec.vmName): \(copy): \(String(cString: strerror(errno)))")
            }
            defer { close(fd) }
            let written = token.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            guard written == token.count, fchown(fd, user.uid, user.gid) == 0 else {
                throw .bootFailed("\(spec.vmName): cannot write the agent token copy \(copy)")
            }
        }
        return files
    }

    /// QEMU's `-sandbox` setting as libvirt gave it (from the running QEMU's command line), or nil.
    static func seccomp(pid: Int32) -> String? {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return nil }
        let args = data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        guard let at = args.firstIndex(of: "-sandbox"), at + 1 < args.count else { return nil }
        return args[at + 1]
    }
}
