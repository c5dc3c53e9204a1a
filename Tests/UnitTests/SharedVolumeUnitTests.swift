import AgentClient
import CRIAPI
import Config
import Errors
import Foundation
import Models
import Testing
import Volumes

@testable import CRI
@testable import ContainerCore
@testable import Hypervisor
@testable import SystemFiles

/// The pieces of shared volumes that need no VM: QEMU's and virtiofsd's command lines, the CRI mount
/// checks, mountinfo parsing, and a pod's shared directory made with real mounts on this host.
@Suite(.serialized) struct SharedVolumeUnitTests {
    /// A pod VM with a shared directory.
    var spec: VMSpec {
        var spec = VMSpec(
            id: "0123456789abcdef0123", kernel: "/g/vmlinuz", initrd: "/g/initrd.cpio", agentImage: "/g/agent.img",
            vcpus: 1, memoryMiB: 256, accel: .auto, stateDir: "/s/x", runDir: "/r/x")
        spec.sharedDir = "/run/cocoon/shared/0123/export"
        return spec
    }

    @Test func qemuSharesGuestRAMAndAddsTheVirtioFSDevice() {
        let files = QEMUFiles.Paths(
            kernel: "/proc/self/fd/3", initrd: "/proc/self/fd/4", agentImage: "/proc/self/fd/5",
            console: "/proc/self/fd/6", token: nil, qmpFD: 7, agentFD: 8, ramFD: 9, fsSocketFD: 10)
        let line = QEMUArguments.make(
            spec: spec, layout: QEMULayout(spec: spec), accel: .tcg, agent: .serial(path: "/r/x/agent.sock"),
            files: files
        ).joined(separator: " ")
        #expect(line.contains("-M microvm,rtc=on,memory-backend=ram "))
        #expect(line.contains("memory-backend-file,id=ram,size=256M,mem-path=/proc/self/fd/9,share=on"))
        #expect(line.contains("-global virtio-mmio.force-legacy=false"))
        #expect(
            line.contains(
                "-chardev socket,id=fs,fd=10 -device vhost-user-fs-device,chardev=fs,tag=cocoon,queue-size=1024"))

        let plain = QEMUFiles.Paths(
            kernel: "/proc/self/fd/3", initrd: "/proc/self/fd/4", agentImage: "/proc/self/fd/5",
            console: "/proc/self/fd/6", token: nil, qmpFD: 7, agentFD: 8)
        let without = QEMUArguments.make(
            spec: spec, layout: QEMULayout(spec: spec), accel: .tcg, agent: .serial(path: "/r/x/agent.sock"),
            files: plain
        ).joined(separator: " ")
        #expect(!without.contains("vhost-user-fs") && !without.contains("memory-backend"))
    }

    @Test func libvirtDomainsGetSharedRAMAndTheFilesystem() {
        let files = LibvirtJail.Files(
            agentSocket: "/r/x/agent.sock", consoleLog: "/s/x/console.log", token: nil, diskDir: "/s/vm-disks/x")
        let user = VMUser(uid: 1_500_001, gid: 1_500_001)
        let xml = LibvirtDomainXML.make(
            spec: spec, accel: .tcg, user: user, files: files, fsSocket: "/r/x/virtiofs.sock")
        #expect(xml.contains("<memoryBacking><source type='memfd'/><access mode='shared'/></memoryBacking>"))
        #expect(xml.contains("<driver type='virtiofs' queue='1024'/><source socket='/r/x/virtiofs.sock'/>"))
        #expect(xml.contains("<target dir='cocoon'/>"))
        let plain = LibvirtDomainXML.make(spec: spec, accel: .tcg, user: user, files: files)
        #expect(!plain.contains("memoryBacking") && !plain.contains("virtiofs"))
    }

    @Test func virtiofsdIsSandboxedWithoutMknodOrFsetid() {
        let args = Virtiofsd.arguments(sharedDir: "/run/cocoon/shared/ab/export")
        #expect(args.first == "/usr/lib/qemu/virtiofsd")
        #expect(args.contains("--fd=3"))
        #expect(args.contains("source=/run/cocoon/shared/ab/export"))
        #expect(args.contains("sandbox=namespace"))
        #expect(args.contains("modcaps=-mknod:-setfcap:-fsetid") && args.contains("killpriv_v2"))
        #expect(args.contains("cache=auto"))
    }

    @Test func criMountsAreChecked() throws {
        func check(_ edit: (inout Runtime_V1_Mount) -> Void) -> CocoonError? {
            var m = Runtime_V1_Mount()
            m.hostPath = "/var/lib/kubelet/pods/u/volumes/x"
            m.containerPath = "/x"
            edit(&m)
            do {
                _ = try ContainerVolumes.mounts([m])
                return nil
            } catch { return error }
        }
        #expect(check { _ in } == nil)
        #expect(check { $0.propagation = .propagationBidirectional }?.code == .invalidArgument)
        #expect(check { $0.propagation = .propagationBidirectional }?.message.contains("mounts[0].propagation") == true)
        #expect(check { $0.recursiveReadOnly = true }?.code == .invalidArgument)
        #expect(
            check {
                $0.readonly = true
                $0.recursiveReadOnly = true
                $0.propagation = .propagationHostToContainer
            }?.code == .invalidArgument)
        #expect(check { $0.containerPath = "x" }?.code == .invalidArgument)
        #expect(check { $0.hostPath = "" }?.code == .invalidArgument)
        #expect(check { $0.image.image = "busybox" }?.code == .unimplemented)
        let ok = try ContainerVolumes.mounts([
            .with {
                $0.hostPath = "/h"
                $0.containerPath = "/c"
                $0.readonly = true
                $0.recursiveReadOnly = true
            },
            .with {
                $0.hostPath = "/h"
                $0.containerPath = "/d"
                $0.propagation = .propagationHostToContainer
            },
        ])
        #expect(ok.map(\.volume.recursiveReadOnly) == [true, false])
        #expect(ok.map(\.volume.propagation) == [.private, .hostToContainer])
    }

    @Test func handlersChooseSharedFSAndCache() throws {
        let config = try ConfigLoader.parse(
            "[handlers.a]\nbackend = \"qemu\"\n[handlers.b]\nbackend = \"libvirt\"\ntrusted_guests = true\n"
                + "shared_fs = \"none\"\nshared_fs_cache = \"none\"\n")
        #expect(config.handlers["a"]?.sharedFS == .virtioFS && config.handlers["a"]?.sharedFSCache == .auto)
        #expect(
            config.handlers["b"]?.sharedFS == SharedFS.none && config.handlers["b"]?.sharedFSCache == SharedFSCache.none
        )
        #expect(throws: (any Error).self) {
            try ConfigLoader.parse("[handlers.a]\nbackend = \"qemu\"\nshared_fs = \"9p\"\n")
        }
        #expect(throws: (any Error).self) {
            try ConfigLoader.parse("[handlers.a]\nbackend = \"qemu\"\nshared_fs_cache = \"sometimes\"\n")
        }
    }

    @Test func mountinfoEscapesAreDecoded() {
        #expect(MountTable.unescape("/a\\040b\\134c") == "/a b\\c")
        #expect(MountTable.unescape("/plain") == "/plain")
        #expect(MountTable.unescape("/end\\04") == "/end\\04")
    }

    /// Real mounts: needs root (CI and scripts/test run as root).
    @Test(.enabled(if: getuid() == 0, "needs root")) func aPodShareBindsSafelyAndLeavesNothing() throws {
        let base = "/tmp/cocoon-share-\(UUID().uuidString.prefix(8))"
        let fm = FileManager.default
        try fm.createDirectory(atPath: base + "/src/sub", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: base + "/state", withIntermediateDirectories: true)
        defer {
            umount2(base + "/src/sub", Int32(MNT_DETACH))
            umount2(base + "/run/podns", Int32(MNT_DETACH))
            try? fm.removeItem(atPath: base)  // test scratch space
        }
        try "hello".write(toFile: base + "/src/file", atomically: true, encoding: .utf8)
        #expect(mount("tmpfs", base + "/src/sub", "tmpfs", 0, nil) == 0)
        try fm.createSymbolicLink(atPath: base + "/link", withDestinationPath: base + "/state")
        try fm.createSymbolicLink(atPath: base + "/srclink", withDestinationPath: base + "/src")

        let share = PodShare(root: base + "/run/shared/pod")
        try share.create()
        try share.create()  // idempotent
        let forbidden = [base + "/state"]
        let ro = try share.bind(
            VolumeRequest(hostPath: base + "/src", containerPath: "/v", readOnly: true), user: "c1", field: "m",
            forbidden: forbidden)
        // A read-only volume with a writable submount: the guest must not make it read-only itself.
        #expect(ro.destination == "/v" && !ro.readOnly)
        let rro = try share.bind(
            VolumeRequest(hostPath: base + "/src", containerPath: "/r", readOnly: true, recursiveReadOnly: true),
            user: "c1", field: "m", forbidden: forbidden)
        #expect(rro.readOnly && rro.name != ro.name)
        let file = try share.bind(
            VolumeRequest(hostPath: base + "/src/file", containerPath: "/f", readOnly: false), user: "c2",
            field: "m", forbidden: forbidden)
        #expect(!file.readOnly)
        // Another container asking for the same source with the same settings gets the same bind.
        let again = try share.bind(
            VolumeRequest(hostPath: base + "/src/", containerPath: "/w", readOnly: true), user: "c2", field: "m",
            forbidden: forbidden)
        #expect(again.name == ro.name && again.destination == "/w")
        let export = share.exportDir
        let pod = PodNamespaceShell(pin: share.namespacePin)
        #expect(pod.run("cat \(export)/\(ro.name)/file").out == "hello")
        #expect(pod.run("touch \(export)/\(ro.name)/new").out.contains("Read-only file system"))
        #expect(pod.run("touch \(export)/\(ro.name)/sub/new").code == 0)
        #expect(pod.run("touch \(export)/\(rro.name)/sub/other").out.contains("Read-only file system"))
        #expect(pod.run("test -w \(export)/\(file.name)").code == 0)
        #expect(pod.run("grep -c ' \(share.root)/mounts/' /proc/self/mountinfo").out == "5\n")
        // Nothing can be made beside the volumes.
        #expect(pod.run("mkdir \(export)/new").out.contains("Read-only file system"))
        // The host's namespace holds none of it: the tmpfs under the source comes off and its
        // directory goes on the host while the pod's binds stay (the kubelet's volume teardown).
        #expect(MountTable.mountPoints().filter { $0.hasPrefix(share.root) }.isEmpty)
        #expect(umount2(base + "/src/sub", Int32(MNT_DETACH)) == 0)
        #expect(rmdir(base + "/src/sub") == 0, "\(String(cString: strerror(errno)))")
        #expect(pod.run("ls \(export)/\(ro.name)").out == "file\n")

        func refusal(_ path: String) -> CocoonError? {
            do {
                _ = try share.bind(
                    VolumeRequest(hostPath: path, containerPath: "/x", readOnly: false), user: "c3",
                    field: "mounts[0].host_path", forbidden: forbidden)
                return nil
            } catch { return error }
        }
        // A symlink is resolved once, on the host (a CRI client's host path may be one): where it
        // leads is what is checked and bound.
        #expect(refusal(base + "/link")?.code == .invalidArgument, "a link into the state root")
        let followed = try share.bind(
            VolumeRequest(hostPath: base + "/srclink", containerPath: "/y", readOnly: true), user: "c2", field: "m",
            forbidden: forbidden)
        #expect(followed.name == ro.name, "the link's directory, bound once")
        #expect(refusal(base + "/state")?.code == .invalidArgument)
        #expect(refusal(base)?.message.contains("contains") == true)
        #expect(refusal("/proc/self")?.code == .invalidArgument)
        #expect(refusal(base + "/missing")?.code == .notFound)
        #expect(refusal(base + "/src/../state")?.code == .invalidArgument)

        // c1 goes: its recursive read-only bind with it, the bind c2 shares stays.
        share.release(user: "c1")
        #expect(pod.run("test -e \(export)/\(rro.name)").code != 0)
        #expect(pod.run("test -f \(export)/\(ro.name)/file && test -f \(export)/\(file.name)").code == 0)
        #expect(share.destroy())
        #expect(MountTable.mountPoints().filter { $0.hasPrefix(base + "/run") }.isEmpty)
        #expect(!fm.fileExists(atPath: share.namespacePin) && !fm.fileExists(atPath: base + "/run/podns"))
        #expect(!fm.fileExists(atPath: share.root))
        #expect((try? String(contentsOfFile: base + "/src/file", encoding: .utf8)) == "hello")
    }
}

/// Runs shell commands in a pod's mount namespace (util-linux nsenter, by the namespace's pin).
struct PodNamespaceShell {
    let pin: String

    func run(_ command: String) -> (out: String, code: Int32) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/nsenter")
        p.arguments = ["--mount=" + pin, "/bin/sh", "-c", command]
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        do { try p.run() } catch { return ("\(error)", -1) }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (String(decoding: data, as: UTF8.self), p.terminationStatus)
    }
}
