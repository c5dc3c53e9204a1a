import CLI
import CRIAPI
import Foundation
import GRPCCore
import Hypervisor
import Testing

/// docs/kubernetes.md's node, for real: cocoond started with the page's configuration (state and
/// run directories moved to a scratch place) lists every RuntimeClass handler of the page, to our
/// client and to crictl's `info`; answers RuntimeConfig with the cgroup driver that `cocoonctl
/// doctor` names; and `cocoonctl doctor` runs against it.
@Suite(
    .serialized,
    .enabled(
        if: DaemonHarness.enabled && TestImages.available, "needs the guest image and the test registry (scripts/test)")
)
struct KubernetesNodeTests {
    @Test func theDocumentedNodeServesTheDocumentedHandlers() async throws {
        let page = try String(contentsOfFile: SystemdServiceTests.repo + "/docs/kubernetes.md", encoding: .utf8)
        let toml = try #require(
            page.components(separatedBy: "```toml\n").dropFirst().first?.components(separatedBy: "\n```").first)
        let handlers = page.split(separator: "\n").filter { $0.hasPrefix("handler: ") }.map { String($0.dropFirst(9)) }
        #expect(Set(handlers) == ["cocoon", "libvirt"], "\(handlers)")
        let root = "/tmp/cocoon-k8s-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }  // test scratch space
        let guest = DaemonHarness.guestDir ?? "/var/lib/cocoon/guest"
        try toml.replacingOccurrences(of: "/var/lib/cocoon/guest", with: guest)
            .write(toFile: root + "/config.toml", atomically: true, encoding: .utf8)
        let daemon = Process()
        daemon.executableURL = URL(fileURLWithPath: DaemonHarness.binary)
        daemon.arguments = [
            "--config", root + "/config.toml", "--state-root", root + "/state", "--run-dir", root + "/run",
        ]
        daemon.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try daemon.run()
        defer {
            daemon.terminate()
            daemon.waitUntilExit()
        }
        let socket = root + "/run/cocoon.sock"
        for _ in 0..<400 where !UnixSocketAddress.accepts(socket) {
            // sleep: a poll pause; the loop checks the condition
            try await Task.sleep(for: .milliseconds(25))
        }
        let (listed, driver) = try await Endpoint(parsing: "unix://" + socket).withClients { rt, _ in
            let status = try await rt.status(.init())
            let config = try await rt.runtimeConfig(.init())
            return (status.runtimeHandlers.map(\.name), config.linux.cgroupDriver)
        }
        for handler in handlers { #expect(listed.contains(handler), "\(handler) not in \(listed)") }
        if let crictl = Crictl.path {
            let info = try await runCommand(Crictl(binary: crictl, socket: socket).prefix + ["info"])
            for handler in handlers {
                #expect(info.out.contains("\"name\": \"\(handler)\""), "\(handler): \(info.out)")
            }
        }
        let doctor = try await runCommand([
            CocoonCtl(socket: socket).binary, "doctor", "--config", root + "/config.toml",
        ])
        let cgroups = doctor.out.split(separator: "\n").first { $0.dropFirst(6).hasPrefix("cgroups ") } ?? ""
        let named = driver == .systemd ? "cgroupDriver: systemd" : "cgroupDriver: cgroupfs"
        #expect(cgroups.contains(named), "RuntimeConfig says \(driver); doctor: \(cgroups)")
    }
}
