import Config
import Foundation
import Hypervisor
import Testing

@testable import CLI

/// `cocoonctl doctor`'s checks on files made for the test: the KVM finding from the real-boot
/// decision, the socket's owner and mode, the CNI plugins a config names, the guest image's
/// agent protocol, and the report's lines and exit status.
@Suite(.serialized) struct DoctorTests {
    let dir = "/tmp/cocoon-doctor-\(UUID().uuidString.prefix(8))"

    init() throws { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }

    @Test func kvmFollowsTheRealBootDecision() throws {
        let device = dir + "/kvm"  // stands in for /dev/kvm: it opens
        FileManager.default.createFile(atPath: device, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: dir) }  // test scratch space
        let json = #"[{"accel": "kvm", "decidedAtNs": 1}, {"accel": "tcg", "decided_at_ns": 2, "reason": "MSR 0x10a"}]"#
        let decisions = HostChecks.KVMDecision.list(fromJSON: Data(json.utf8))
        #expect(decisions.map(\.accel) == ["kvm", "tcg"])
        let latest = HostChecks.kvm(device: device, decisions: decisions, source: "test")
        #expect(
            latest.level == .warn && latest.finding.contains("cannot run the guest") && latest.finding.contains("MSR"))
        #expect(HostChecks.kvm(device: device, decisions: [decisions[0]], source: "test").level == .ok)
        #expect(HostChecks.kvm(device: device, decisions: [], source: "test").finding.contains("no real boot"))
        #expect(HostChecks.kvm(device: dir + "/none", decisions: decisions, source: "test").finding.contains("no "))
        #expect(HostChecks.KVMDecision.list(fromJSON: Data("{}".utf8)).isEmpty)
    }

    @Test func theSocketIsRootsAlone() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }  // test scratch space
        let path = dir + "/cri.sock"
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        #expect(UnixSocketAddress.bind(fd, path: path))
        chmod(path, 0o600)
        #expect(NodeChecks.socket(path).level == (getuid() == 0 ? .ok : .fail))
        chmod(path, 0o666)
        #expect(NodeChecks.socket(path).level == .fail)
        #expect(NodeChecks.socket(dir + "/missing.sock").level == .warn)
        FileManager.default.createFile(atPath: dir + "/file", contents: nil)
        #expect(NodeChecks.socket(dir + "/file").finding.contains("not a socket"))
    }

    @Test func cniPluginsMustBeThere() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }  // test scratch space
        var config = CocoonConfig()
        config.cni.confDir = dir + "/net.d"
        config.cni.binDirs = [dir + "/bin"]
        #expect(NodeChecks.cni(config).level == .fail)  // no directory
        for sub in ["net.d", "bin"] {
            try FileManager.default.createDirectory(atPath: dir + "/" + sub, withIntermediateDirectories: true)
        }
        let list = #"{"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "bridge"}, {"type": "portmap"}]}"#
        try list.write(toFile: dir + "/net.d/10-n.conflist", atomically: true, encoding: .utf8)
        FileManager.default.createFile(
            atPath: dir + "/bin/bridge", contents: Data(), attributes: [.posixPermissions: 0o755])
        let missing = NodeChecks.cni(config)
        #expect(missing.level == .fail && missing.finding.hasSuffix("portmap"), "\(missing)")
        FileManager.default.createFile(
            atPath: dir + "/bin/portmap", contents: Data(), attributes: [.posixPermissions: 0o755])
        #expect(NodeChecks.cni(config).level == .ok)
    }

    @Test func theGuestImageSpeaksTheDaemonsProtocol() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }  // test scratch space
        var config = try ConfigLoader.parse(
            "[handlers.vm]\nbackend = \"qemu\"\nkernel = \"\(dir)/vmlinux\"\ninitrd = \"\(dir)/initrd.cpio\"\n")
        config.handlers = config.handlers.filter { $0.key == "vm" }
        #expect(NodeChecks.guestImage(config).finding.contains("is missing"))
        for file in ["vmlinux", "initrd.cpio", "agent.img"] {
            FileManager.default.createFile(atPath: dir + "/" + file, contents: nil)
        }
        #expect(NodeChecks.guestImage(config).level == .warn)  // no manifest
        #expect(NodeChecks.agentProtocol == "cocoon.agent.v4")
        try "kernel=x\nagent_protocol=cocoon.agent.v3\n".write(
            toFile: dir + "/manifest", atomically: true, encoding: .utf8)
        #expect(NodeChecks.guestImage(config).level == .fail)
        try "agent_protocol=\(NodeChecks.agentProtocol)\n".write(
            toFile: dir + "/manifest", atomically: true, encoding: .utf8)
        #expect(NodeChecks.guestImage(config).level == .ok)
    }

    @Test func theReportHasALinePerCheckAndFailsOnAFail() {
        let checks: [DoctorCheck] = [.ok("a", "fine"), .warn("bb", "meh", "do this")]
        #expect(DoctorReport.render(checks) == "ok    a   fine\nwarn  bb  meh\n      → do this")
        #expect(DoctorReport.exitCode(checks) == 0)
        #expect(DoctorReport.exitCode(checks + [.fail("c", "bad", "fix")]) == 1)
    }
}
