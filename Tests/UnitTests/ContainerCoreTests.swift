import ContainerCore
import Foundation
import Models
import Testing

/// ContainerCore on the host, as root, no VM: a busybox root filesystem built in a temp dir, real
/// namespaces, real mounts, real identities.
@Suite(.serialized) struct ContainerCoreHostTests {
    /// A minimal root filesystem: busybox-static and an /etc/passwd with a non-root user.
    static func makeRootfs() throws -> String {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("ccore-\(UUID().uuidString.prefix(8))")
            .path
        let fm = FileManager.default
        for dir in ["bin", "etc", "tmp", "home/app"] {
            try fm.createDirectory(atPath: "\(root)/\(dir)", withIntermediateDirectories: true)
        }
        let busybox = ["/bin/busybox", "/usr/bin/busybox"].first { fm.fileExists(atPath: $0) } ?? "/bin/busybox"
        try fm.copyItem(atPath: busybox, toPath: "\(root)/bin/busybox")
        for applet in [
            "sh", "cat", "echo", "id", "hostname", "touch", "grep", "sleep", "ls", "wc", "readlink", "unshare", "mkdir",
            "seq", "head", "tr", "tty", "stat", "mknod",
        ] {
            try fm.createSymbolicLink(atPath: "\(root)/bin/\(applet)", withDestinationPath: "busybox")
        }
        try "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n".write(
            toFile: "\(root)/etc/passwd", atomically: true, encoding: .utf8)
        try "root:x:0:\napp:x:1000:\nextra:x:2000:app\n".write(
            toFile: "\(root)/etc/group", atomically: true, encoding: .utf8)
        return root
    }

    /// Runs the container's first process to completion; returns its exit status and stdout+stderr.
    static func run(_ spec: ContainerSpec, cgroup: Cgroup? = nil) throws -> (status: Int32, output: String) {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        let pid: Int32
        do {
            pid = try ContainerLauncher.start(spec, stdio: .init(output: fds[1], error: fds[1]), cgroup: cgroup)
        } catch {
            close(fds[0])
            close(fds[1])
            throw error
        }
        close(fds[1])
        let output = FileHandle(fileDescriptor: fds[0], closeOnDealloc: true).readDataToEndOfFile()
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        return ((status >> 8) & 0xff, String(decoding: output, as: UTF8.self))
    }

    func spec(_ script: String, root: String) -> ContainerSpec {
        var s = ContainerSpec(id: "t", rootfs: root, process: ProcessSpec(args: ["sh", "-c", script]))
        s.hostname = "pod-host"
        return s
    }

    @Test func namespacesAreReallySeparate() throws {
        let root = try Self.makeRootfs()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let result = try Self.run(
            spec("echo pid=$$; hostname; ls /proc | grep -c '^[0-9]'; readlink /proc/self/ns/mnt; ls /dev", root: root))
        #expect(result.status == 0, "\(result.output)")
        let lines = result.output.split(separator: "\n").map(String.init)
        #expect(lines.first == "pid=1")
        #expect(lines.contains("pod-host"))
        #expect(
            lines.count > 2 && Int(lines[2]).map { $0 <= 3 } == true,
            "the container sees only its own processes: \(result.output)")
        let hostMnt = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/mnt")
        #expect(lines.count > 3 && lines[3] != hostMnt)
        #expect(result.output.contains("null") && result.output.contains("pts") && result.output.contains("shm"))
        var uts = utsname()
        uname(&uts)
        #expect(
            withUnsafeBytes(of: uts.nodename) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) } != "pod-host")
    }

    @Test func readOnlyRootfsRefusesWritesAndMaskedPathsAreHidden() throws {
        let root = try Self.makeRootfs()
        defer { try? FileManager.default.removeItem(atPath: root) }
        var s = spec(
            "touch /tmp/x && echo wrote; cat /proc/kcore | wc -c; touch /proc/sys/x 2>&1 || echo sysro", root: root)
        s.readOnlyRootfs = true
        let result = try Self.run(s)
        #expect(!result.output.contains("wrote"), "\(result.output)")
        #expect(result.output.contains("Read-only file system"))
        #expect(result.output.split(separator: "\n").contains("0"), "kcore is masked: \(result.output)")
        #expect(!FileManager.default.fileExists(atPath: "\(root)/tmp/x"))
    }

    @Test func nonRootImageUserRunsAsThatUid() throws {
        let root = try Self.makeRootfs()
        defer { try? FileManager.default.removeItem(atPath: root) }
        var s = spec("id -u; id -g; id -G; echo $HOME", root: root)
        s.process.user = UserSpec(username: "app")
        let result = try Self.run(s)
        #expect(
            result.output.split(separator: "\n").map(String.init) == ["1000", "1000", "1000 2000", "/home/app"],
            "\(result.output)")
        s.process.user = UserSpec(username: "nobody-here")
        #expect(throws: ContainerCoreError.notFound("user \"nobody-here\" not found in the image's /etc/passwd")) {
            try Self.run(s)
        }
    }

    @Test func capabilitiesAreDropped() throws {
        let root = try Self.makeRootfs()
        defer { try? FileManager.default.removeItem(atPath: root) }
        var s = spec("grep -E '^Cap(Eff|Bnd)' /proc/self/status; hostname other 2>&1 || echo denied", root: root)
        s.process.capabilities = try Capability.resolve(add: [], drop: ["ALL"])
        var result = try Self.run(s)
        #expect(result.output.contains("CapEff:\t0000000000000000"), "\(result.output)")
        #expect(result.output.contains("CapBnd:\t0000000000000000"))
        #expect(result.output.contains("denied"))
        s.process.capabilities = try Capability.resolve(add: ["NET_ADMIN"], drop: ["MKNOD"])
        s.process.args = ["sh", "-c", "grep -E '^Cap(Eff|Inh)' /proc/self/status"]
        result = try Self.run(s)
        let expected = String(Capability.mask(s.process.capabilities), radix: 16)
        #expect(
            result.output.contains("CapEff:\t" + String(repeating: "0", count: 16 - expected.count) + expected),
            "\(result.output)")
        // No inheritable capabilities (CVE-2022-24769): a file's inheritable caps grant nothing.
        #expect(result.output.contains("CapInh:\t0000000000000000"), "\(result.output)")
        #expect(throws: ContainerCoreError.self) { try Capability.resolve(add: ["CAP_FLY"], drop: []) }
    }

    @Test func bindMountsAreVisibleAndReadOnlyWhereAsked() throws {
        let root = try Self.makeRootfs()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let shared = root + "-shared"
        try FileManager.default.createDirectory(atPath: shared, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: shared) }
        try "hello from the host\n".write(toFile: shared + "/greeting", atomically: true, encoding: .utf8)
        var s = spec(
            "cat /data/greeting; cat /etc/motd; touch /data/new 2>&1 || echo ro; touch /rw/new && echo rw-ok",
            root: root)
        s.mounts = [
            Mount(source: shared, destination: "/data", readOnly: true),
            Mount(source: shared + "/greeting", destination: "/etc/motd", readOnly: true),
            Mount(source: "tmpfs", destination: "/rw", type: "tmpfs"),
        ]
        let result = try Self.run(s)
        #expect(result.output.components(separatedBy: "hello from the host").count == 3, "\(result.output)")
        #expect(result.output.contains("ro\n") && result.output.contains("rw-ok"))
        #expect(!FileManager.default.fileExists(atPath: shared + "/new"))
        s.mounts = [Mount(source: "/nonexistent/cocoon", destination: "/x")]
        #expect(throws: ContainerCoreError.notFound("mount source /nonexistent/cocoon does not exist")) {
            try Self.run(s)
        }
    }

    @Test func execJoinsTheRunningContainer() throws {
        let root = try Self.makeRootfs()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let first = try ContainerLauncher.start(spec("sleep 30", root: root), stdio: .init(), cgroup: nil)
        defer {
            kill(first, SIGKILL)
            var st: Int32 = 0
            waitpid(first, &st, 0)
        }
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        let pid = try ContainerLauncher.exec(
            ProcessSpec(args: ["sh", "-c", "hostname; set -- /proc/[0-9]*; echo $#; id -u"]), into: first, rootfs: root,
            stdio: .init(output: fds[1], error: fds[1]), cgroup: nil)
        close(fds[1])
        let output = String(
            decoding: FileHandle(fileDescriptor: fds[0], closeOnDealloc: true).readDataToEndOfFile(), as: UTF8.self)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        // The shell counts /proc itself (no pipeline whose second process may not exist yet): the
        // container's sleep and this shell are all its PID namespace holds.
        #expect(output.split(separator: "\n").map(String.init) == ["pod-host", "2", "0"], "\(output)")
    }

    /// A container's first process with a terminal gets it from the container's own devpts (not the
    /// caller's), as its controlling terminal owned by its user; the caller gets the master.
    @Test func aConsoleComesFromTheContainersOwnDevpts() throws {
        let root = try Self.makeRootfs()
        defer { try? FileManager.default.removeItem(atPath: root) }
        var pair: [Int32] = [-1, -1]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0)
        var s = spec("tty; ls /dev/pts; stat -c %u $(tty); [ -t 0 ] && [ -t 2 ] && echo all-terminal", root: root)
        s.process.user.username = "app"
        let pid = try ContainerLauncher.start(s, stdio: .init(console: pair[1]), cgroup: nil)
        close(pair[1])
        let master = try ContainerLauncher.receiveTerminal(pair[0])
        close(pair[0])
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(master, $0.baseAddress, $0.count) }
            if n <= 0 { break }  // EIO once the process and its terminal are gone
            output += chunk[0..<n]
        }
        close(master)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        let words = String(decoding: output, as: UTF8.self).split(whereSeparator: \.isWhitespace).map(String.init)
        #expect(words == ["/dev/pts/0", "0", "ptmx", "1000", "all-terminal"], "\(words)")
    }

    @Test func seccompRuntimeDefaultRefusesBlockedSyscalls() throws {
        let root = try Self.makeRootfs()
        defer { try? FileManager.default.removeItem(atPath: root) }
        var s = spec("unshare -U true && echo unshared || echo refused", root: root)
        #expect(try Self.run(s).output.contains("unshared"), "without a filter a user namespace can be created")
        s.process.seccomp = .runtimeDefault
        let result = try Self.run(s)
        #expect(
            result.output.contains("refused") && result.output.contains("Operation not permitted"), "\(result.output)")
    }

    /// A static probe, built with the host's gcc into the rootfs, that tries one system call of each
    /// class RuntimeDefault decides on and prints what the kernel said.
    static func buildSeccompProbe(into root: String) throws {
        let source = root + "/probe.c"
        try """
        #define _GNU_SOURCE
        #include <errno.h>
        #include <sched.h>
        #include <stdio.h>
        #include <sys/personality.h>
        #include <sys/socket.h>
        #include <signal.h>
        #include <sys/syscall.h>
        #include <unistd.h>
        static void report(const char *what, long rc) {
            const char *e = errno == EPERM ? "EPERM" : errno == ENOSYS ? "ENOSYS" : "error";
            printf("%s=%s\\n", what, rc < 0 ? e : "ok");
        }
        int main(void) {
            long pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
            if (pid == 0) _exit(0);
            report("clone_newuser", pid);
            pid = syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
            if (pid == 0) _exit(0);
            report("clone_plain", pid);
            report("socket_vsock", socket(40, SOCK_STREAM, 0));
            report("socket_unix", socket(AF_UNIX, SOCK_STREAM, 0));
            report("personality_query", personality(0xffffffff));
            report("personality_exec", personality(READ_IMPLIES_EXEC));
            report("kexec_load", syscall(SYS_kexec_load, 0, 0, 0, 0));
            report("sethostname", sethostname("x", 1));
            report("clone3", syscall(SYS_clone3, 0, 0));
            return 0;
        }
        """.write(toFile: source, atomically: true, encoding: .utf8)
        let gcc = Process()
        gcc.executableURL = URL(fileURLWithPath: "/usr/bin/gcc")
        gcc.arguments = ["-static", "-O1", "-o", root + "/bin/probe", source]
        try gcc.run()
        gcc.waitUntilExit()
        #expect(gcc.terminationStatus == 0, "gcc could not build the seccomp probe (apt: gcc libc6-dev)")
    }

    /// RuntimeDefault is an allow-list with Docker's semantics: each class of call is decided as
    /// Docker's default profile decides it, and capabilities widen it as they do there.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/gcc")))
    func seccompRuntimeDefaultIsAnAllowListWithDockersConditions() throws {
        let root = try Self.makeRootfs()
        defer { try? FileManager.default.removeItem(atPath: root) }
        try Self.buildSeccompProbe(into: root)
        var s = ContainerSpec(id: "t", rootfs: root, process: ProcessSpec(args: ["/bin/probe"]))
        s.process.seccomp = .runtimeDefault
        let confined = try Self.run(s).output
        for expected in [
            "clone_newuser=EPERM", "clone_plain=ok", "socket_vsock=EPERM", "socket_unix=ok", "personality_query=ok",
            "personality_exec=EPERM", "kexec_load=EPERM", "sethostname=EPERM", "clone3=ENOSYS",
        ] {
            #expect(confined.contains(expected + "\n"), "\(expected) in \(confined)")
        }
        // With CAP_SYS_ADMIN, the namespace and host-name calls are the capability's to decide.
        s.process.capabilities.insert(try #require(Capability(name: "SYS_ADMIN")))
        let admin = try Self.run(s).output
        #expect(admin.contains("clone_newuser=ok\n") && admin.contains("sethostname=ok\n"), "\(admin)")
        #expect(admin.contains("socket_vsock=EPERM\n") && admin.contains("kexec_load=EPERM\n"), "\(admin)")
        // Unconfined: the probe sees the kernel's own answers.
        s.process.seccomp = .unconfined
        s.process.capabilities = Capability.defaultSet
        #expect(try Self.run(s).output.contains("personality_exec=ok\n"))
    }

    /// A cgroup v2 directory to test the device filter in (any cgroup2 mount will do: it needs no
    /// controller), or nil.
    static let deviceCgroupRoot: String? = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"].first {
        FileManager.default.fileExists(atPath: $0 + "/cgroup.procs")
            && FileManager.default.fileExists(atPath: $0 + "/cgroup.controllers")
    }

    /// runc's default device list: a container may make a device node (/dev/kmsg here) but not open it, while
    /// /dev/null still opens; a container allowed every device opens it.
    @Test(.enabled(if: deviceCgroupRoot != nil, "no cgroup v2 mount on this host"))
    func theDeviceCgroupLetsContainersMakeButNotOpenOtherDevices() throws {
        let root = try Self.makeRootfs()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let base = try #require(Self.deviceCgroupRoot)
        let path = base + "/ccore-dev-\(UUID().uuidString.prefix(8))"
        let cgroup = try Cgroup.create(path, root: base, resources: Resources())
        defer { rmdir(path) }
        try cgroup.restrictDevices()
        let script =
            "mknod /tmp/kmsg c 1 11 && echo made; (exec 3>/tmp/kmsg) && echo opened-kmsg; "
            + "mknod /tmp/null c 1 3 && echo x > /tmp/null && echo opened-null"
        var s = spec(script, root: root)
        s.process.capabilities.insert(try #require(Capability(name: "MKNOD")))
        let restricted = try Self.run(s, cgroup: cgroup).output
        #expect(restricted.contains("made") && restricted.contains("opened-null"), "\(restricted)")
        #expect(!restricted.contains("opened-kmsg") && restricted.contains("Operation not permitted"), "\(restricted)")
        // Without the filter (a privileged container's cgroup), the same node opens.
        let open = base + "/ccore-dev-\(UUID().uuidString.prefix(8))"
        let unrestricted = try Cgroup.create(open, root: base, resources: Resources())
        defer { rmdir(open) }
        var plain = spec("mknod /tmp/kmsg c 1 11; (exec 3>/tmp/kmsg) && echo opened-kmsg", root: root)
        plain.process.capabilities = s.process.capabilities
        #expect(try Self.run(plain, cgroup: unrestricted).output.contains("opened-kmsg"))
    }

    @Test func seccompLocalhostProfileApplies() throws {
        let root = try Self.makeRootfs()
        defer { try? FileManager.default.removeItem(atPath: root) }
        var s = spec("mkdir /tmp/d && echo made || echo refused", root: root)
        s.process.seccomp = .json(
            #"{"defaultAction":"SCMP_ACT_ALLOW","#
                + #""syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":13}]}"#
        )
        let result = try Self.run(s)
        #expect(result.output.contains("refused") && result.output.contains("Permission denied"), "\(result.output)")
        s.process.seccomp = .json(#"{"defaultAction":"SCMP_ACT_BOGUS"}"#)
        #expect(throws: ContainerCoreError.self) { try Self.run(s) }
    }

    /// A cgroup v2 hierarchy with the memory and pids controllers, if this host has one (hybrid hosts
    /// such as the CI machines bind those controllers to v1; the same code is tested in the pod VM).
    static let cgroupRoot: String? = {
        for root in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
            let controllers = (try? String(contentsOfFile: root + "/cgroup.controllers", encoding: .utf8)) ?? ""
            if controllers.contains("memory") && controllers.contains("pids") { return root }
        }
        return nil
    }()

    @Test(.enabled(if: cgroupRoot != nil, "no cgroup v2 with memory and pids controllers on this host"))
    func cgroupLimitsAreEnforced() throws {
        let root = try Self.makeRootfs()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let base = try #require(Self.cgroupRoot)
        let path = "\(base)/cocoon-test-\(UUID().uuidString.prefix(8))"
        var s = spec("for i in $(seq 40); do sleep 1 & done; echo forked", root: root)
        s.resources = Resources(memoryLimitBytes: 16 << 20, pidsLimit: 8)
        let cgroup = try Cgroup.create(path + "/c", root: base, resources: s.resources)
        defer {
            cgroup.killAll()
            usleep(200_000)  // sleep: the killed processes leave the cgroup (cleanup; no signal here)
            try? cgroup.remove()
            rmdir(path)
        }
        let output = try Self.run(s, cgroup: cgroup).output
        #expect(output.contains("can't fork") && !output.contains("forked"), "pids.max caps the fork bomb: \(output)")
        cgroup.killAll()
        var hog = spec("x=$(head -c 64000000 /dev/zero | tr '\\0' a); echo survived", root: root)
        hog.resources = s.resources
        let hogGroup = try Cgroup.create(path + "/hog", root: base, resources: Resources(memoryLimitBytes: 16 << 20))
        defer {
            hogGroup.killAll()
            usleep(200_000)  // sleep: the killed processes leave the cgroup (cleanup; no signal here)
            try? hogGroup.remove()
        }
        let hogPid = try ContainerLauncher.start(hog, stdio: .init(), cgroup: hogGroup)
        var status: Int32 = 0
        waitpid(hogPid, &status, 0)
        #expect((status & 0x7f) == SIGKILL && hogGroup.stats().oomKills > 0, "the memory hog is OOM-killed")
    }

    @Test func missingExecutableIsNotFound() throws {
        let root = try Self.makeRootfs()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let s = ContainerSpec(id: "t", rootfs: root, process: ProcessSpec(args: ["no-such-binary"]))
        #expect(
            throws: ContainerCoreError.notFound(
                "exec: executable file not found in $PATH: no-such-binary: No such file or directory")
        ) { try Self.run(s) }
    }
}

/// Argument and environment merging, path resolution: pure logic.
struct ContainerCoreLogicTests {
    @Test func mergesArgumentsAsTheKubeletExpects() throws {
        #expect(try ProcessArguments.merge(entrypoint: ["/ep"], cmd: ["c1"], command: [], args: []) == ["/ep", "c1"])
        #expect(try ProcessArguments.merge(entrypoint: ["/ep"], cmd: ["c1"], command: [], args: ["a"]) == ["/ep", "a"])
        #expect(try ProcessArguments.merge(entrypoint: ["/ep"], cmd: ["c1"], command: ["/x"], args: []) == ["/x"])
        #expect(try ProcessArguments.merge(entrypoint: [], cmd: ["sh"], command: ["/x"], args: ["y"]) == ["/x", "y"])
        #expect(throws: ContainerCoreError.self) {
            try ProcessArguments.merge(entrypoint: [], cmd: [], command: [], args: [])
        }
        #expect(
            ProcessArguments.mergeEnvironment(image: ["PATH=/bin", "A=1"], container: ["A=2", "B=3"]) == [
                "PATH=/bin", "A=2", "B=3",
            ])
    }

    @Test func symlinksCannotEscapeTheRootfs() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent(
            "safepath-\(UUID().uuidString.prefix(8))"
        ).path
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileManager.default.createDirectory(atPath: root + "/real", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: root + "/etc", withDestinationPath: "/../../../host-etc")
        try FileManager.default.createSymbolicLink(atPath: root + "/up", withDestinationPath: "../../..")
        try FileManager.default.createSymbolicLink(atPath: root + "/loop", withDestinationPath: "loop")
        #expect(try SafePath.resolve(root: root, "/etc/passwd") == root + "/host-etc/passwd")
        #expect(try SafePath.resolve(root: root, "/up/etc/shadow") == root + "/host-etc/shadow")
        #expect(try SafePath.resolve(root: root, "../../real/x") == root + "/real/x")
        #expect(throws: ContainerCoreError.self) { try SafePath.resolve(root: root, "/loop/x") }
    }
}
