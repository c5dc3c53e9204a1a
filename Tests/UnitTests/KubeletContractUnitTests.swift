import CRIAPI
import ContainerCore
import Errors
import Foundation
import Spawn
import Testing

@testable import CRI
@testable import Hypervisor

/// The logic behind the kubelet-contract fixes, without a VM: when a stop signal may be sent, how a
/// KVM probe is judged and keyed, which sysctls a pod may set, the security-context translation,
/// paging of the list streams, and that helpers start with no descriptor of the daemon.
@Suite struct KubeletContractUnitTests {
    static let status = "Name:\ttop\nSigQ:\t0/825\nSigPnd:\t0000000000000000\nSigBlk:\t0000000000000000\n"

    @Test func aStopSignalWaitsUntilPID1CatchesIt() {
        let uncaught = Self.status + "SigIgn:\t0000000000000000\nSigCgt:\t0000000000000000\n"
        let caught = Self.status + "SigIgn:\t0000000000000000\nSigCgt:\t0000000000004000\n"  // bit 15: SIGTERM
        let ignored = Self.status + "SigIgn:\t0000000000004000\nSigCgt:\t0000000000000000\n"
        #expect(SignalDelivery.decide(signal: 15, pid1Status: uncaught) == .wait)
        #expect(SignalDelivery.decide(signal: 15, pid1Status: caught) == .now)
        #expect(SignalDelivery.decide(signal: 15, pid1Status: ignored) == .now)
        #expect(SignalDelivery.decide(signal: 2, pid1Status: caught) == .wait)
        #expect(SignalDelivery.decide(signal: 9, pid1Status: uncaught) == .now)
        #expect(SignalDelivery.decide(signal: 15, pid1Status: "garbage") == .now)
        // PID 1 of its own namespace: held; a process of a shared one (the pod's, the node's): sent.
        #expect(SignalDelivery.decide(signal: 15, pid1Status: uncaught + "NSpid:\t4242\t1\n") == .wait)
        #expect(SignalDelivery.decide(signal: 15, pid1Status: uncaught + "NSpid:\t4242\t7\n") == .now)
        #expect(SignalDelivery.decide(signal: 15, pid1Status: uncaught + "NSpid:\t4242\n") == .now)
    }

    @Test func aKVMProbeIsJudgedByTheMarker() {
        let ok = KVMProbe.judge(console: "COCOON-PROBE-OK\n", status: 0, output: "", elapsed: .milliseconds(420))
        #expect(ok.usable && ok.reason.contains("420 ms"))
        let stalled = KVMProbe.judge(console: "", status: 137, output: "", elapsed: .seconds(6))
        #expect(
            !stalled.usable && stalled.reason.contains("did not reach /init")
                && stalled.reason.contains("printed nothing"))
        let refused = KVMProbe.judge(
            console: "", status: 1, output: "qemu: Could not access KVM kernel module", elapsed: .milliseconds(30))
        #expect(!refused.usable && refused.reason.contains("Could not access KVM"))
        let args = KVMProbe.arguments(qemu: "/q", kernel: "/k", initrd: "/i", console: "/c").joined(separator: " ")
        #expect(
            args.contains("accel=kvm") && args.contains("cocoon.probe=1") && args.contains("-serial file:/c")
                && !args.contains("-daemonize"))
    }

    @Test func anAcceleratorDecisionIsKeyedByItsInputs() throws {
        let dir = NSTemporaryDirectory() + "accel-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Data("k".utf8).write(to: URL(fileURLWithPath: dir + "/vmlinuz"))
        try Data("i".utf8).write(to: URL(fileURLWithPath: dir + "/initrd"))
        let before = Accelerator.key(qemu: "/bin/true", kernel: dir + "/vmlinuz", initrd: dir + "/initrd")
        #expect(before == Accelerator.key(qemu: "/bin/true", kernel: dir + "/vmlinuz", initrd: dir + "/initrd"))
        try Data("kernel 2".utf8).write(to: URL(fileURLWithPath: dir + "/vmlinuz"))
        #expect(before != Accelerator.key(qemu: "/bin/true", kernel: dir + "/vmlinuz", initrd: dir + "/initrd"))
        #expect(before != Accelerator.key(qemu: "/bin/false", kernel: dir + "/vmlinuz", initrd: dir + "/initrd"))
    }

    func pod(sysctls: [String: String]) -> Runtime_V1_RunPodSandboxRequest {
        .with {
            $0.config.metadata = .with {
                $0.name = "p"
                $0.namespace = "ns"
                $0.uid = "u"
            }
            $0.config.linux.sysctls = sysctls
        }
    }

    @Test func onlyNamespacedSysctlsAreAccepted() throws {
        let ok = [
            "kernel.shm_rmid_forced": "1", "fs.mqueue.msg_max": "100", "net.ipv4.ip_forward": "1",
            "net/ipv4/conf/all/rp_filter": "2",
        ]
        #expect(try PodSandboxRequest.validate(pod(sysctls: ok)).sysctls == ok)
        for bad in [
            ["vm.swappiness": "1"], ["kernel.panic": "1"], ["net.core.rmem_max": "1"], ["net..x": "1"],
            ["net.ipv4.x": "1\n2"], ["../etc": "1"],
        ] {
            #expect(throws: CocoonError.self, "\(bad)") { _ = try PodSandboxRequest.validate(pod(sysctls: bad)) }
        }
    }

    @Test func securityContextTranslation() throws {
        var s = Runtime_V1_LinuxContainerSecurityContext()
        s.runAsGroup = .with { $0.value = 5 }
        #expect(throws: CocoonError.self) { _ = try ContainerArgs.user(s, imageUser: "") }
        #expect(try ContainerArgs.user(s, imageUser: "nobody").gid == 5)
        s.runAsUser = .with { $0.value = 1000 }
        #expect(try ContainerArgs.user(s, imageUser: "").uid == 1000)

        var paths = Runtime_V1_LinuxContainerSecurityContext()
        #expect(try ContainerArgs.paths(paths) == nil)
        paths.maskedPaths = ["/proc/cpuinfo"]
        #expect(try ContainerArgs.paths(paths)?.masked == ["/proc/cpuinfo"])
        #expect(try ContainerArgs.paths(paths)?.readonly == [])
        paths.readonlyPaths = ["relative"]
        #expect(throws: CocoonError.self) { _ = try ContainerArgs.paths(paths) }
        paths.privileged = true
        #expect(try ContainerArgs.paths(paths)?.masked == [])

        var privileged = Runtime_V1_LinuxContainerSecurityContext()
        privileged.seccomp = .with { $0.profileType = .runtimeDefault }
        #expect(try ContainerArgs.seccomp(privileged) == .runtimeDefault)
        privileged.privileged = true
        #expect(try ContainerArgs.seccomp(privileged) == .unconfined)
    }

    /// A VM process is known by its pid and start time, not its command line (which a compromised
    /// process may rewrite); a pid reused by another process is not it.
    @Test func aProcessIsKnownByItsStartTimeNotItsCommandLine() throws {
        let sleeper = Process()
        sleeper.executableURL = URL(fileURLWithPath: "/bin/sleep")
        sleeper.arguments = ["30"]
        try sleeper.run()
        defer { sleeper.terminate() }
        let pid = sleeper.processIdentifier
        let ticks = try #require(HostProcess.startTicks(pid))
        #expect(!HostProcess.isAlive(pid: pid, marker: "cocoon-0123456789ab"), "its command line names no VM")
        #expect(HostProcess.isAlive(pid: pid, marker: "cocoon-0123456789ab", startTicks: ticks))
        #expect(!HostProcess.isAlive(pid: pid, marker: "sleep", startTicks: ticks + 1), "another process's pid")
        #expect(HostProcess.liveUIDs().contains(getuid()))
    }

    @Test func helpersGetNoDescriptorOfTheDaemon() async throws {
        // A descriptor opened without close-on-exec, as NIO's listening sockets are.
        let leaky = open("/dev/null", O_RDONLY)
        #expect(leaky > 2)
        defer { close(leaky) }
        let r = try await HostProcess.run(["/bin/sh", "-c", "ls /proc/$$/fd"])
        let fds = r.output.split(separator: "\n").filter { Int($0) != nil }.map(String.init)
        #expect(fds.sorted() == ["0", "1", "2"], "the helper shell has descriptors \(fds)")
        // The helper's own mask (not a shell's: dash blocks everything for a moment around each fork).
        let mask = try await HostProcess.run(["/bin/grep", "SigBlk", "/proc/self/status"])
        #expect(mask.output == "SigBlk:\t0000000000000000\n", "\(mask.output)")
    }
}
