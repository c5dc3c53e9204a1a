import CRIAPI
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Testing

/// Pod networks through the real CNI plugins (bridge, host-local, portmap, loopback from Debian's
/// containernetworking-plugins) into real pod VMs: the pod's IP answers from the host and from
/// another pod, host ports work, the pod knows its DNS and name, and nothing is left afterwards.
@Suite(
    .serialized,
    .enabled(
        if: DaemonHarness.enabled && TestImages.available, "needs the guest image and the test registry (scripts/test)")
)
struct PodNetworkTests {
    typealias Runtime = Runtime_V1_RuntimeService.Client<HTTP2ClientTransport.Posix>
    static let busybox = "127.0.0.1:5000/busybox:latest"
    /// Serves /www/index.html (the pod's name) on port 80.
    static let web = ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www"]

    func exec(_ rt: Runtime, _ id: String, _ script: String) async throws -> (out: String, code: Int32) {
        try await execScript(rt, id, script)
    }

    /// GET from the host (busybox wget under `timeout`: Debian's busybox-static wget crashes on its
    /// own -T), retried for a few seconds while the server starts.
    func fetch(_ url: String) async throws -> String {
        var last = ""
        for _ in 0..<50 {
            let r = try await runCommand(
                ["/usr/bin/timeout", "5", "/usr/bin/busybox", "wget", "-q", "-O", "-", url], timeout: .seconds(20))
            if r.code == 0 { return r.out }
            last = r.stderr
            // sleep: a retry pause; the loop checks the condition
            try await Task.sleep(for: .milliseconds(200))
        }
        throw TestFailure(description: "GET \(url) failed: \(last)")
    }

    /// A pod running the web container; its id, its IP and the container's id.
    /// A pod config whose log directory is under the test daemon's directory (removed with it).
    func netPod(_ daemon: DaemonHarness, _ name: String) -> Runtime_V1_RunPodSandboxRequest {
        var pod = podConfig(name)
        pod.config.logDirectory = daemon.root + "/logs/" + name
        return pod
    }

    func webPod(
        _ daemon: DaemonHarness, _ rt: Runtime, _ name: String,
        edit: (inout Runtime_V1_RunPodSandboxRequest) -> Void = { _ in }
    )
        async throws -> (pod: String, ip: String, container: String, config: Runtime_V1_RunPodSandboxRequest)
    {
        var pod = netPod(daemon, name)
        pod.config.hostname = name
        edit(&pod)
        let podID = try await rt.runPodSandbox(pod).podSandboxID
        let ip = try await rt.podSandboxStatus(.with { $0.podSandboxID = podID }).status.network.ip
        let container = try await runContainer(
            rt, containerRequest("web", Self.web, pod: pod, podID: podID, image: Self.busybox))
        return (podID, ip, container, pod)
    }

    func remove(_ rt: Runtime, _ podID: String) async throws {
        try await rt.stopPodSandbox(.with { $0.podSandboxID = podID })
        try await rt.removePodSandbox(.with { $0.podSandboxID = podID })
    }

    /// What a pod leaves on the host while it lives: its namespace, the veth end on the bridge, the
    /// host-local lease, portmap's chains and rules naming its IP.
    struct HostTraces: Equatable, CustomStringConvertible {
        var namespaces: [String]
        var veths: [String]
        var leases: [String]
        var iptables: [String]
        var isEmpty: Bool { namespaces.isEmpty && veths.isEmpty && leases.isEmpty && iptables.isEmpty }
        var description: String { "netns \(namespaces), veths \(veths), leases \(leases), iptables \(iptables)" }
    }

    func traces(_ daemon: DaemonHarness, ips: [String] = []) async throws -> HostTraces {
        let links = try await runCommand(["/usr/sbin/ip", "-o", "link", "show", "master", daemon.network.bridge]).out
        let veths = links.split(separator: "\n").compactMap {
            $0.split(separator: " ").dropFirst().first.map(String.init)
        }
        let rules = try await runCommand(["/usr/sbin/iptables-save", "-t", "nat"]).out.split(separator: "\n").map(
            String.init)
        let pod = rules.filter { line in
            ips.contains { line.contains($0 + "/") || line.contains($0 + ":") || line.contains(" " + $0 + " ") }
        }
        return HostTraces(
            namespaces: orphanNamespaces(), veths: veths, leases: daemon.network.leases(), iptables: pod)
    }

    /// Pod namespaces no daemon's sandbox owns (a sandbox's record is saved before its namespace is
    /// made and deleted after it is removed, so a live pod of any test daemon is never counted).
    func orphanNamespaces() -> [String] {
        var owned = Set<String>()
        let roots =
            ((try? FileManager.default.contentsOfDirectory(atPath: "/tmp")) ?? [])
            .filter { $0.hasPrefix("cocoon-it-") }.map { "/tmp/\($0)/state/sandboxes" } + ["/var/lib/cocoon/sandboxes"]
        for root in roots {
            for id in (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? [] {
                owned.insert("cocoon-" + id.prefix(16))
            }
        }
        let all = (try? FileManager.default.contentsOfDirectory(atPath: "/var/run/netns")) ?? []
        return all.filter { $0.hasPrefix("cocoon-") && !owned.contains($0) }
    }

    @Test func podsAreReachableByIPFromTheHostFromEachOtherAndThroughAHostPort() async throws {
        try await withDaemon { daemon in
            _ = try await daemon.withImages { img in try await pull(img, Self.busybox) }
            try await daemon.withRuntime { rt in
                let status = try await rt.status(.init())
                #expect(status.status.conditions.first { $0.type == "NetworkReady" }?.status == true)
                let hostPort = Int32(freePort())
                let a = try await webPod(daemon, rt, "net-a") { pod in
                    pod.config.portMappings = [
                        .with {
                            $0.containerPort = 80
                            $0.hostPort = hostPort
                            $0.protocol = .tcp
                        }
                    ]
                    pod.config.dnsConfig = .with {
                        $0.servers = ["10.96.0.10"]
                        $0.searches = ["it.svc.cluster.local", "svc.cluster.local"]
                        $0.options = ["ndots:5"]
                    }
                }
                let b = try await webPod(daemon, rt, "net-b")
                #expect(a.ip.hasPrefix("10.213.\(daemon.network.subnetIndex).") && b.ip != a.ip && !b.ip.isEmpty)

                // host -> pod, by IP and through the host port (portmap's DNAT on the node).
                #expect(try await fetch("http://\(a.ip)/") == "net-a\n")
                #expect(try await fetch("http://\(b.ip)/") == "net-b\n")
                #expect(try await fetch("http://127.0.0.1:\(hostPort)/") == "net-a\n")

                // pod -> pod across the bridge, and pod -> the bridge's gateway (a server on the host).
                let fromA = try await exec(rt, a.container, "wget -q -O - http://\(b.ip)/")
                #expect(fromA.code == 0 && fromA.out == "net-b\n", "\(fromA)")
                let gatewayPort = freePort()
                let www = daemon.root + "/gateway-www"
                try FileManager.default.createDirectory(atPath: www, withIntermediateDirectories: true)
                try "host-side\n".write(toFile: www + "/index.html", atomically: true, encoding: .utf8)
                let server = try Command([
                    "/usr/bin/busybox", "httpd", "-f", "-p", "\(daemon.network.gateway):\(gatewayPort)", "-h", www,
                ])
                defer { server.kill() }
                let toGateway = try await exec(
                    rt, b.container, "wget -q -O - http://\(daemon.network.gateway):\(gatewayPort)/")
                #expect(toGateway.code == 0 && toGateway.out == "host-side\n", "\(toGateway)")

                // What the pod was told: its resolv.conf, its name, its address in /etc/hosts and on eth0.
                let resolv = try await exec(rt, a.container, "cat /etc/resolv.conf")
                #expect(
                    resolv.out
                        == "search it.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n")
                let identity = try await exec(rt, a.container, "cat /etc/hostname; hostname; grep net-a /etc/hosts")
                #expect(identity.out == "net-a\nnet-a\n\(a.ip)\tnet-a\n", "\(identity)")
                let eth0 = try await exec(rt, a.container, "cat /sys/class/net/eth0/address /sys/class/net/eth0/mtu")
                let verbose =
                    try await rt.podSandboxStatus(
                        .with {
                            $0.podSandboxID = a.pod
                            $0.verbose = true
                        }
                    ).info["info"] ?? ""
                let info = try JSONSerialization.jsonObject(with: Data(verbose.utf8)) as? [String: Any]
                let network = try #require(info?["network"] as? [String: Any])
                #expect(
                    eth0.out == "\(network["mac"] ?? "?")\n\(network["mtu"] ?? "?")\n",
                    "the guest NIC is the CNI interface's")

                // A container the kubelet gives its own /etc/hosts keeps it (the pod's is for the others).
                let kubeletHosts = daemon.root + "/kubelet-hosts"
                try "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n".write(
                    toFile: kubeletHosts, atomically: true, encoding: .utf8)
                var mounted = containerRequest(
                    "hosts", ["sleep", "1000"], pod: b.config, podID: b.pod, image: Self.busybox)
                mounted.config.mounts = [
                    .with {
                        $0.hostPath = kubeletHosts
                        $0.containerPath = "/etc/hosts"
                    }
                ]
                let withHosts = try await runContainer(rt, mounted)
                let kubelets = try await exec(rt, withHosts, "cat /etc/hosts; cat /etc/hostname")
                #expect(
                    kubelets.out == "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\nnet-b\n", "\(kubelets)")

                // cocoonctl's wide listing shows both pods' IPs.
                let wide = try await runCommand(CocoonCtl(socket: daemon.socket).argv("pods", ["-o", "wide"]))
                #expect(wide.out.contains(a.ip) && wide.out.contains(b.ip) && wide.out.contains("IP"), "\(wide.out)")

                // crictl, an independent client, sees the same IP.
                if let crictl = Crictl.path {
                    let inspect = try await runCommand(
                        Crictl(binary: crictl, socket: daemon.socket).prefix + ["inspectp", "-o", "json", a.pod])
                    #expect(inspect.out.contains("\"ip\": \"\(a.ip)\""), "\(inspect.out.prefix(400))")
                }
                try await remove(rt, a.pod)
                try await remove(rt, b.pod)
                let left = try await traces(daemon, ips: [a.ip, b.ip])
                #expect(left.isEmpty, "\(left)")
                let gone = try await runCommand(
                    [
                        "/usr/bin/timeout", "2", "/usr/bin/busybox", "wget", "-q", "-O", "-",
                        "http://127.0.0.1:\(hostPort)/",
                    ])
                #expect(gone.code != 0, "the host port is closed with its pod")
            }
        }
    }

    @Test func aGuestThatTakesAnotherMACOrIPReachesNothing() async throws {
        try await withDaemon { daemon in
            _ = try await daemon.withImages { img in try await pull(img, Self.busybox) }
            try await daemon.withRuntime { rt in
                var pod = netPod(daemon, "spoof")
                pod.config.hostname = "spoof"
                let podID = try await rt.runPodSandbox(pod).podSandboxID
                let ip = try await rt.podSandboxStatus(.with { $0.podSandboxID = podID }).status.network.ip
                // A privileged container owns the guest's network stack, as a guest owning its kernel does.
                var request = containerRequest(
                    "owner", ["sleep", "100000"], pod: pod, podID: podID, image: Self.busybox)
                request.config.linux.securityContext.privileged = true
                let owner = try await runContainer(rt, request)
                let www = daemon.root + "/gateway-www"
                try FileManager.default.createDirectory(atPath: www, withIntermediateDirectories: true)
                try "host-side\n".write(toFile: www + "/index.html", atomically: true, encoding: .utf8)
                let port = freePort()
                let server = try Command([
                    "/usr/bin/busybox", "httpd", "-f", "-p", "\(daemon.network.gateway):\(port)", "-h", www,
                ])
                defer { server.kill() }
                let gw = daemon.network.gateway
                let get = "busybox timeout 5 wget -q -O - http://\(gw):\(port)/"
                let mac = try await execScript(rt, owner, "cat /sys/class/net/eth0/address").out
                    .trimmingCharacters(in: .whitespacesAndNewlines)
                #expect(try await execScript(rt, owner, get).out == "host-side\n", "its own MAC and IP pass")

                // Another MAC: nothing leaves (the bridge never learns it).
                _ = try await execScript(rt, owner, "busybox ip link set eth0 address 02:de:ad:be:ef:01")
                #expect(try await execScript(rt, owner, "busybox ip neigh flush dev eth0; \(get)").code != 0)
                _ = try await execScript(rt, owner, "busybox ip link set eth0 address \(mac)")
                #expect(try await execScript(rt, owner, get).out == "host-side\n", "its own MAC again")

                // Another IP of the subnet: its ARP and its packets are dropped.
                let prefix = "10.213.\(daemon.network.subnetIndex)."
                let readdress = { (address: String) in
                    "busybox ip addr flush dev eth0; busybox ip addr add \(address)/24 dev eth0; "
                        + "busybox ip route add default via \(gw); busybox ip neigh flush dev eth0"
                }
                _ = try await execScript(rt, owner, readdress(prefix + "250"))
                #expect(try await execScript(rt, owner, get).code != 0, "a spoofed source IP reaches nothing")
                _ = try await execScript(rt, owner, readdress(ip))
                #expect(try await execScript(rt, owner, get).out == "host-side\n", "its own IP again")
                try await remove(rt, podID)
            }
        }
    }

    @Test func aDualStackNetworkGivesThePodBothAddresses() async throws {
        try await withDaemon { daemon in
            try daemon.network.conflist(dualStack: true).write(
                toFile: daemon.cniConfDir + "/10-cocoon-it.conflist", atomically: true, encoding: .utf8)
            _ = try await daemon.withImages { img in try await pull(img, Self.busybox) }
            try await daemon.withRuntime { rt in
                let pod = try await webPod(daemon, rt, "dual")
                let status = try await rt.podSandboxStatus(.with { $0.podSandboxID = pod.pod }).status.network
                let v6 = try #require(status.additionalIps.first?.ip)
                #expect(status.ip.hasPrefix("10.213.") && v6.hasPrefix("fd42:cc:"), "IPv4 first, then IPv6")
                #expect(try await fetch("http://\(pod.ip)/") == "dual\n")
                #expect(try await fetch("http://[\(v6)]/") == "dual\n", "the guest answers on its IPv6 address")
                let hosts = try await execScript(rt, pod.container, "grep dual /etc/hosts")
                #expect(hosts.out == "\(pod.ip)\tdual\n\(v6)\tdual\n")
                try await remove(rt, pod.pod)
                let left = try await traces(daemon, ips: [pod.ip, v6])
                #expect(left.isEmpty, "\(left)")
            }
        }
    }

    /// A dual-stack pod whose guest owns its network stack (a privileged container sending frames
    /// it builds whole, from its own MAC): IPv6 from its own address reaches the host's bridge, but
    /// not from another source address, nor a router advertisement, nor a neighbour advertisement
    /// for another address. An IPv4-only pod's IPv6 reaches nothing at all.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/gcc")))
    func aGuestCannotSpoofIPv6OrActAsTheRouter() async throws {
        let dir = NSTemporaryDirectory() + "v6attack-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }  // test scratch space
        let attack = try IPv6Attack.build(in: dir)
        /// A pod with a privileged container holding `v6attack`; the pod id, the container and its MAC.
        func attacker(_ rt: Runtime, _ daemon: DaemonHarness, _ name: String) async throws -> (String, String, String) {
            let pod = netPod(daemon, name)
            let podID = try await rt.runPodSandbox(pod).podSandboxID
            var request = containerRequest("owner", ["sleep", "100000"], pod: pod, podID: podID, image: Self.busybox)
            request.config.linux.securityContext.privileged = true
            request.config.mounts = [
                .with {
                    $0.hostPath = attack
                    $0.containerPath = "/v6attack"
                    $0.readonly = true
                }
            ]
            let owner = try await runContainer(rt, request)
            let mac = try await exec(rt, owner, "cat /sys/class/net/eth0/address").out
                .trimmingCharacters(in: .whitespacesAndNewlines)
            return (podID, owner, mac)
        }
        // The guest kernel's link-local address for a MAC (EUI-64).
        func linkLocal(_ mac: String) -> String {
            let b = mac.split(separator: ":").compactMap { UInt8($0, radix: 16) }
            return String(format: "fe80::%02x%02x:%02xff:fe%02x:%02x%02x", b[0] ^ 2, b[1], b[2], b[3], b[4], b[5])
        }

        // An IPv4-only pod: no IPv6 at all, not even from its link-local.
        try await withDaemon { daemon in
            _ = try await daemon.withImages { img in try await pull(img, Self.busybox) }
            try await daemon.withRuntime { rt in
                let (podID, owner, mac) = try await attacker(rt, daemon, "v4only")
                let seen = try await IPv6Attack.capture(on: daemon.network.bridge) {
                    let sent = try await exec(rt, owner, "/v6attack echo \(linkLocal(mac)) ff02::1")
                    #expect(sent.out.contains("sent"), "\(sent)")
                }
                // The guest's echo (ICMPv6 type 128) must not pass. (The pod network namespace's own
                // kernel may send MLD reports and router solicitations on the CNI interface, whose
                // MAC and link-local the guest shares: those are the host's, not the guest's.)
                #expect(!seen.contains { $0.mac == mac && $0.icmpType == 128 }, "IPv6 from an IPv4-only pod: \(seen)")
                try await remove(rt, podID)
            }
        }

        try await withDaemon { daemon in
            try daemon.network.conflist(dualStack: true).write(
                toFile: daemon.cniConfDir + "/10-cocoon-it.conflist", atomically: true, encoding: .utf8)
            _ = try await daemon.withImages { img in try await pull(img, Self.busybox) }
            try await daemon.withRuntime { rt in
                let (podID, owner, mac) = try await attacker(rt, daemon, "v6spoof")
                let status = try await rt.podSandboxStatus(.with { $0.podSandboxID = podID }).status.network
                let own = try #require(status.additionalIps.first?.ip)
                let prefix = "fd42:cc:\(daemon.network.subnetIndex)::"
                let (gateway, spoofed, local) = (prefix + "1", prefix + "250", linkLocal(mac))
                let seen = try await IPv6Attack.capture(on: daemon.network.bridge) {
                    for command in [
                        "echo \(own) \(gateway)", "echo \(spoofed) \(gateway)", "ra \(local) ff02::1",
                        "na \(local) ff02::1 \(gateway)", "na \(own) ff02::1 \(own)",
                    ] {
                        let sent = try await exec(rt, owner, "/v6attack " + command)
                        #expect(sent.out.contains("sent"), "\(command): \(sent)")
                    }
                }
                let fromPod = seen.filter { $0.mac == mac }
                print("IPv6 frames from the pod on the bridge: \(fromPod)")
                #expect(fromPod.contains { $0.source == own && $0.icmpType == 128 }, "its own echo passes: \(seen)")
                #expect(fromPod.contains { $0.icmpType == 136 && $0.target == own }, "its own advertisement passes")
                #expect(!fromPod.contains { $0.source == spoofed }, "a spoofed source: \(fromPod)")
                #expect(!fromPod.contains { $0.icmpType == 134 }, "a router advertisement: \(fromPod)")
                #expect(
                    !fromPod.contains { $0.icmpType == 136 && $0.target == gateway }, "the gateway's NA: \(fromPod)")
                try await remove(rt, podID)
            }
        }
    }

    @Test func aLibvirtPodIsOnThePodNetworkToo() async throws {
        try await withDaemon { daemon in
            _ = try await daemon.withImages { img in try await pull(img, Self.busybox) }
            try await daemon.withRuntime { rt in
                let pod = try await webPod(daemon, rt, "net-lv") { $0.runtimeHandler = "libvirt" }
                #expect(try await fetch("http://\(pod.ip)/") == "net-lv\n")
                let tap = "cc" + pod.pod.prefix(12)
                let hostLinks = try await runCommand(["/usr/sbin/ip", "-o", "link"]).out
                #expect(!hostLinks.contains(tap + ":"), "libvirt's tap has moved into the pod's namespace")
                try await remove(rt, pod.pod)
                let left = try await traces(daemon, ips: [pod.ip])
                #expect(left.isEmpty, "\(left)")
                #expect(!(try await runCommand(["/usr/sbin/ip", "-o", "link"]).out.contains(tap + ":")))
            }
        }
    }

    @Test func tenPodsUpAndDownLeaveNothingAndDelWorksForAKilledVM() async throws {
        try await withDaemon { daemon in
            try await daemon.withRuntime { rt in
                var ips: [String] = []
                for round in 0..<5 {
                    try await withThrowingTaskGroup(of: String.self) { group in
                        for slot in 0..<2 {
                            group.addTask {
                                var pod = netPod(daemon, "churn-\(round)-\(slot)")
                                pod.config.portMappings = [
                                    .with {
                                        $0.containerPort = 80
                                        $0.hostPort = Int32(freePort())
                                    }
                                ]
                                let id = try await rt.runPodSandbox(pod).podSandboxID
                                let ip = try await rt.podSandboxStatus(.with { $0.podSandboxID = id }).status.network.ip
                                try await remove(rt, id)
                                return ip
                            }
                        }
                        for try await ip in group { ips.append(ip) }
                    }
                }
                #expect(Set(ips).count >= 2 && ips.allSatisfy { !$0.isEmpty })
                let left = try await traces(daemon, ips: ips)
                #expect(left.isEmpty, "\(left)")
                #expect(try FileManager.default.contentsOfDirectory(atPath: daemon.stateRoot + "/cni/results").isEmpty)

                // A pod whose VM was killed from outside: stop still runs CNI DEL and frees everything.
                let pod = netPod(daemon, "killed")
                let id = try await rt.runPodSandbox(pod).podSandboxID
                let status = try await rt.podSandboxStatus(
                    .with {
                        $0.podSandboxID = id
                        $0.verbose = true
                    })
                kill(try vmPid(status), SIGKILL)
                // sleep: the killed VM dies and the daemon may notice (no signal for the latter)
                try await Task.sleep(for: .milliseconds(500))
                try await remove(rt, id)
                let after = try await traces(daemon, ips: [status.status.network.ip])
                #expect(after.isEmpty, "\(after)")
                #expect(!FileManager.default.fileExists(atPath: "/var/run/netns/cocoon-" + id.prefix(16)))
            }
        }
    }

    @Test func networkedPodsSurviveADaemonRestartAndStillTearDown() async throws {
        try await withDaemon { daemon in
            _ = try await daemon.withImages { img in try await pull(img, Self.busybox) }
            let pods = try await daemon.withRuntime { rt in
                [try await webPod(daemon, rt, "keep-a"), try await webPod(daemon, rt, "keep-b")]
            }
            await daemon.stop()
            try await daemon.start()
            #expect(try await fetch("http://\(pods[0].ip)/") == "keep-a\n")
            #expect(try await fetch("http://\(pods[1].ip)/") == "keep-b\n")
            try await daemon.withRuntime { rt in
                for pod in pods {
                    let status = try await rt.podSandboxStatus(.with { $0.podSandboxID = pod.pod }).status
                    #expect(status.network.ip == pod.ip)
                    try await remove(rt, pod.pod)
                }
            }
            let left = try await traces(daemon, ips: pods.map(\.ip))
            #expect(left.isEmpty, "\(left)")
        }
    }

    @Test func noConfigAFailingPluginAndAHostNetworkPodAreRefusedLeavingNothing() async throws {
        try await withDaemon { daemon in
            try await daemon.withRuntime { rt in
                let conflist = daemon.cniConfDir + "/10-cocoon-it.conflist"
                try FileManager.default.removeItem(atPath: conflist)
                let status = try await rt.status(.init()).status.conditions.first { $0.type == "NetworkReady" }
                #expect(status?.status == false && status?.reason == "NetworkPluginNotReady")
                #expect(status?.message.contains(daemon.cniConfDir) == true, "\(status?.message ?? "")")
                let noConfig = await #expect(throws: RPCError.self) {
                    _ = try await rt.runPodSandbox(netPod(daemon, "nocfg"))
                }
                #expect(noConfig?.code == .failedPrecondition && noConfig?.message.contains(daemon.cniConfDir) == true)

                // A real plugin refusing ADD: host-local with a /30, whose one free address another
                // holder has taken (its lease file).
                let full = daemon.network.conflist(subnet: "10.213.\(daemon.network.subnetIndex).0/30")
                try full.write(toFile: conflist, atomically: true, encoding: .utf8)
                let leases = daemon.network.leaseDir + "/" + daemon.network.name
                try FileManager.default.createDirectory(atPath: leases, withIntermediateDirectories: true)
                let taken = "10.213.\(daemon.network.subnetIndex).2"
                try "someone-else\neth0".write(toFile: leases + "/" + taken, atomically: true, encoding: .utf8)
                let refused = await #expect(throws: RPCError.self) {
                    _ = try await rt.runPodSandbox(netPod(daemon, "full"))
                }
                #expect(
                    refused?.message.contains("CNI plugin bridge failed (ADD)") == true, "\(refused?.message ?? "")")
                #expect(refused?.message.contains("no IP addresses available") == true, "\(refused?.message ?? "")")

                var host = netPod(daemon, "hostnet")
                host.config.linux.securityContext.namespaceOptions.network = .node
                let hostNet = await #expect(throws: RPCError.self) { _ = try await rt.runPodSandbox(host) }
                #expect(
                    hostNet?.code == .invalidArgument && hostNet?.message.contains("namespace_options.network") == true)

                #expect(try await rt.listPodSandbox(.init()).items.isEmpty)
                #expect(daemon.leftoverFiles().isEmpty, "\(daemon.leftoverFiles())")
                try FileManager.default.removeItem(atPath: leases + "/" + taken)
                let left = try await traces(daemon)
                #expect(left.isEmpty, "\(left)")
                let vms = try await runCommand(["/usr/bin/pgrep", "-f", "process=cocoon-"]).out
                let mine = try FileManager.default.contentsOfDirectory(atPath: daemon.stateRoot + "/sandboxes")
                #expect(mine.isEmpty && !vms.contains(daemon.root), "no VM and no sandbox state")

                try daemon.network.conflist().write(toFile: conflist, atomically: true, encoding: .utf8)
                let ready = try await rt.status(.init()).status.conditions.first { $0.type == "NetworkReady" }
                #expect(ready?.status == true, "the config is read again when it comes back")
                try await rt.updateRuntimeConfig(.with { $0.runtimeConfig.networkConfig.podCidr = "10.213.0.0/16" })
                let info = try await rt.status(.with { $0.verbose = true }).info["network"] ?? ""
                #expect(info.contains("\"pod_cidr\":\"10.213.0.0\\/16\"") || info.contains("10.213.0.0/16"), "\(info)")
                let bad = await #expect(throws: RPCError.self) {
                    try await rt.updateRuntimeConfig(.with { $0.runtimeConfig.networkConfig.podCidr = "not-a-cidr" })
                }
                #expect(bad?.code == .invalidArgument)
            }
        }
    }
}
