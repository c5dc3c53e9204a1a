import CRI
import CRIAPI
import Errors
import Foundation
import Netlink
import Sandboxes
import Testing

@testable import PodNetwork

/// CNI as libcni does it: configuration files, what a plugin gets (environment, stdin), results in
/// both formats, and the ADD/DEL order with the DEL cache (plugins here are shell scripts that log
/// what they were given; the real plugins run in the integration tests).
@Suite struct CNILogicTests {
    static let bridgeList = """
        {"cniVersion":"1.0.0","name":"pods","plugins":[
          {"type":"bridge","bridge":"cni0","ipam":{"type":"host-local","ranges":[[{"subnet":"10.1.0.0/16"}]]}},
          {"type":"portmap","capabilities":{"portMappings":true}},
          {"type":"bandwidth","capabilities":{"bandwidth":true}}]}
        """

    @Test func aConflistAndASinglePluginConfParse() throws {
        let list = try CNINetworkList.parse(Data(Self.bridgeList.utf8), source: "10-pods.conflist")
        #expect(list.name == "pods" && list.cniVersion == "1.0.0" && list.plugins.count == 3)
        #expect(list.pluginType(1) == "portmap" && list.capabilities(1) == ["portMappings"])
        let conf = try CNINetworkList.parse(
            Data(#"{"cniVersion":"0.4.0","name":"one","type":"bridge","bridge":"x"}"#.utf8), source: "a.conf")
        #expect(conf.plugins.count == 1 && conf.pluginType(0) == "bridge")
        for (bad, why) in [
            (#"{"cniVersion":"1.0.0","plugins":[{"type":"bridge"}]}"#, "\"name\" is required"),
            (#"{"cniVersion":"0.2.0","name":"n","plugins":[{"type":"bridge"}]}"#, "cniVersion \"0.2.0\""),
            (#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"../../bin/sh"}]}"#, "plugins[0].type"),
            (#"{"cniVersion":"1.0.0","name":"n","plugins":[]}"#, "non-empty array"),
            ("not json", "is not a JSON object"),
        ] {
            #expect(throws: CNIError.self) { try CNINetworkList.parse(Data(bad.utf8), source: "f") }
            do {
                _ = try CNINetworkList.parse(Data(bad.utf8), source: "f")
            } catch {
                #expect(error.description.contains(why), "\(error)")
            }
        }
    }

    @Test func theFirstConfigByNameIsUsedAndReadAgainWhenItChanges() throws {
        let dir = try temporaryStateRoot()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var configs = CNIConfigDirectory(path: dir)
        #expect(throws: CNIError.noConfig("no CNI network config found in \(dir)")) { try configs.current() }
        try Data(Self.bridgeList.utf8).write(to: URL(fileURLWithPath: dir + "/20-pods.conflist"))
        try Data("ignored".utf8).write(to: URL(fileURLWithPath: dir + "/00-readme.txt"))
        #expect(try configs.current().name == "pods")
        try Data(#"{"cniVersion":"1.0.0","name":"first","plugins":[{"type":"ptp"}]}"#.utf8)
            .write(to: URL(fileURLWithPath: dir + "/10-first.conf"))
        #expect(try configs.current().name == "first")
        try FileManager.default.removeItem(atPath: dir + "/10-first.conf")
        #expect(try configs.current().name == "pods")
    }

    @Test func aPluginGetsTheCNIEnvironmentAndItsConfigWithPrevResultAndDeclaredCapabilities() throws {
        let list = try CNINetworkList.parse(Data(Self.bridgeList.utf8), source: "x")
        let request = PodNetworkRequest(
            podID: "abc123", name: "web", namespace: "shop", uid: "u-1",
            portMappings: [PortMapping(hostPort: 8080, containerPort: 80, protocol: "tcp")],
            bandwidth: Bandwidth(ingressRate: 1_000_000))
        let rt = CNIPodNetwork.runtimeConf(request, netns: "/var/run/netns/cocoon-abc123")
        let runner = CNIPluginRunner(binDirs: ["/opt/cni/bin", "/usr/lib/cni"], timeout: .seconds(5))
        let env = runner.environment(.add, rt)
        for expected in [
            "CNI_COMMAND=ADD", "CNI_CONTAINERID=abc123", "CNI_NETNS=/var/run/netns/cocoon-abc123", "CNI_IFNAME=eth0",
            "CNI_PATH=/opt/cni/bin:/usr/lib/cni",
            "CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web;"
                + "K8S_POD_INFRA_CONTAINER_ID=abc123;K8S_POD_UID=u-1",
        ] {
            #expect(env.contains(expected), "\(expected)")
        }
        let prev = JSONValue.object(["cniVersion": .string("1.0.0"), "ips": .array([])])
        let bridge = CNIPluginRunner.stdinConfig(list, plugin: 0, prevResult: nil, rt: rt)
        #expect(bridge["name"]?.string == "pods" && bridge["cniVersion"]?.string == "1.0.0")
        #expect(bridge["runtimeConfig"] == nil && bridge["prevResult"] == nil, "bridge declares no capability")
        let portmap = CNIPluginRunner.stdinConfig(list, plugin: 1, prevResult: prev, rt: rt)
        #expect(portmap["prevResult"] == prev)
        let mappings = portmap["runtimeConfig"]?["portMappings"]
        #expect(
            mappings
                == .array([
                    .object(["hostPort": .number(8080), "containerPort": .number(80), "protocol": .string("tcp")])
                ]))
        #expect(portmap["runtimeConfig"]?["bandwidth"] == nil, "only the capabilities a plugin declares")
        let shaping = CNIPluginRunner.stdinConfig(list, plugin: 2, prevResult: prev, rt: rt)
        #expect(shaping["runtimeConfig"]?["bandwidth"]?["ingressRate"] == .number(1_000_000))
        #expect(
            String(decoding: portmap.encoded(), as: UTF8.self).contains(#""hostPort":8080"#), "integers stay integers")
    }

    @Test func resultsOfBothFormatsGiveThePodsAddressesAndRoutes() throws {
        let v040 = """
            {"cniVersion":"0.4.0","interfaces":[{"name":"cni0","mac":"aa:aa:aa:aa:aa:aa"},
              {"name":"veth1","mac":"bb:bb:bb:bb:bb:bb"},
              {"name":"eth0","mac":"cc:cc:cc:cc:cc:cc","sandbox":"/var/run/netns/x"}],
             "ips":[{"version":"6","address":"fd00::5/64","gateway":"fd00::1","interface":2},
                    {"version":"4","address":"10.1.0.5/16","gateway":"10.1.0.1","interface":2}],
             "routes":[{"dst":"0.0.0.0/0"},{"dst":"::/0","gw":"fd00::1"}],"dns":{"nameservers":["10.1.0.10"]}}
            """
        let old = try CNIResult.parse(Data(v040.utf8), plugin: "bridge")
        #expect(old.podIPs.map(\.address) == ["10.1.0.5/16", "fd00::5/64"], "IPv4 first")
        #expect(old.dns?.nameservers == ["10.1.0.10"])
        let v100 = """
            {"cniVersion":"1.0.0","interfaces":[{"name":"cni0"},{"name":"eth0","sandbox":"/var/run/netns/x"}],
             "ips":[{"address":"10.1.0.6/16","gateway":"10.1.0.1","interface":1}]}
            """
        let new = try CNIResult.parse(Data(v100.utf8), plugin: "bridge")
        #expect(new.podIPs.map(\.address) == ["10.1.0.6/16"] && new.routes.isEmpty)
        #expect(throws: CNIError.self) {
            try CNIResult.parse(Data(#"{"cniVersion":"1.0.0","ips":[{"address":"10.1.0.6"}]}"#.utf8), plugin: "p")
        }
        #expect(throws: CNIError.self) {
            try CNIResult.parse(
                Data(#"{"cniVersion":"1.0.0","ips":[{"address":"10.1.0.6/16","interface":3}]}"#.utf8), plugin: "p")
        }
    }

    static let pluginError =
        #"{"cniVersion":"1.0.0","code":11,"msg":"no IP addresses available","details":"range 10.1.0.0/16 is full"}"#

    /// Writes a plugin that logs its command, CNI_ARGS and stdin to `log`, and answers ADD with a
    /// result naming itself (or fails with an error JSON when `fail` is set).
    static func plugin(_ dir: String, _ name: String, log: String, fail: Bool = false) throws {
        let script = """
            #!/bin/sh
            input=$(cat)
            printf '%s %s %s\\n' "$CNI_COMMAND" "\(name)" "$input" >> \(log)
            \(fail ? "echo '\(Self.pluginError)'; exit 1" : "")
            if [ "$CNI_COMMAND" = ADD ]; then
              head='{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"'$CNI_NETNS'"}],'
              ips='"ips":[{"address":"10.1.0.9/16","gateway":"10.1.0.1","interface":0}],'
              echo "$head$ips"'"dns":{"nameservers":["\(name)"]}}'

            fi
            """
        try Data(script.utf8).write(to: URL(fileURLWithPath: dir + "/" + name))
        chmod(dir + "/" + name, 0o755)
    }

    @Test func addRunsInOrderWithPrevResultAndDelRunsInReverseFromTheCache() async throws {
        let dir = try temporaryStateRoot()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = dir + "/calls.log"
        for name in ["first", "second"] { try Self.plugin(dir, name, log: log) }
        let list = try CNINetworkList.parse(
            Data(#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"first"},{"type":"second"}]}"#.utf8), source: "x"
        )
        let ops = CNINetworkOps(
            runner: CNIPluginRunner(binDirs: ["/nonexistent", dir], timeout: .seconds(10)),
            cache: CNICache(directory: dir + "/cache"))
        let rt = CNIPodNetwork.runtimeConf(
            PodNetworkRequest(podID: "pod1", name: "web", namespace: "ns", uid: "u"), netns: "/var/run/netns/p")
        let result = try await ops.add(list, rt)
        #expect(result.dns?.nameservers == ["second"], "the last plugin's result is the list's")
        let cached = try #require(ops.cache.load(network: "n", containerID: "pod1", ifName: "eth0"))
        #expect(cached.result == result.raw && cached.cniArgs.contains(["K8S_POD_NAME", "web"]))
        // DEL with the cached list even when the configuration has gone.
        let bare = CNIRuntimeConf(containerID: "pod1", netns: "", ifName: "eth0", args: [], capabilityArgs: [:])
        try await ops.del(network: "n", bare)
        let calls = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n")
        #expect(
            calls.map { $0.split(separator: " ").prefix(2).joined(separator: " ") }
                == ["ADD first", "ADD second", "DEL second", "DEL first"])
        #expect(!calls[0].contains("prevResult") && calls[1].contains(#""prevResult":{"#))
        #expect(calls[2].contains(#""prevResult":{"#), "DEL gets the cached result")
        #expect(ops.cache.load(network: "n", containerID: "pod1", ifName: "eth0") == nil)
        try await ops.del(network: "n", bare)  // nothing cached: nothing to do, no error
    }

    @Test func aFailingPluginsErrorIsTheMessageAndTheEarlierPluginsAreUndone() async throws {
        let dir = try temporaryStateRoot()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = dir + "/calls.log"
        try Self.plugin(dir, "good", log: log)
        try Self.plugin(dir, "bad", log: log, fail: true)
        let list = try CNINetworkList.parse(
            Data(#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"good"},{"type":"bad"}]}"#.utf8), source: "x")
        let ops = CNINetworkOps(
            runner: CNIPluginRunner(binDirs: [dir], timeout: .seconds(10)), cache: CNICache(directory: dir + "/cache"))
        let rt = CNIRuntimeConf(containerID: "p", netns: "/x", ifName: "eth0", args: [], capabilityArgs: [:])
        await #expect(
            throws: CNIError.plugin(
                "CNI plugin bad failed (ADD): no IP addresses available; range 10.1.0.0/16 is full")
        ) { _ = try await ops.add(list, rt) }
        let calls = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n")
            .map { $0.split(separator: " ").prefix(2).joined(separator: " ") }
        #expect(calls.prefix(3) == ["ADD good", "ADD bad", "DEL bad"], "\(calls)")
        let missing = CNIPluginRunner(binDirs: [dir], timeout: .seconds(1))
        await #expect(throws: CNIError.self) { _ = try await missing.run(.add, type: "absent", config: .null, rt: rt) }
    }

    @Test func theTapLetsOutOnlyThePodsOwnMACAndIPv4() {
        let rules = TapGuard.rules(mac: "0e:ab:2e:6e:8d:74", addresses: ["10.213.5.7/24"], redirectTo: 9)
        let mac = [
            IngressRule.Key(value: 0x0eab_2e6e, mask: 0xffff_ffff, offset: -8),
            IngressRule.Key(value: 0x8d74_0000, mask: 0xffff_0000, offset: -4),
        ]
        #expect(
            rules == [
                IngressRule(
                    priority: 1, etherType: 0x0806,
                    keys: mac + [
                        .init(value: 0x0000_0ad5, mask: 0x0000_ffff, offset: 12),
                        .init(value: 0x0507_0000, mask: 0xffff_0000, offset: 16),
                    ], action: .redirect(9)),
                IngressRule(
                    priority: 2, etherType: 0x0800,
                    keys: mac + [.init(value: 0x0ad5_0507, mask: 0xffff_ffff, offset: 12)],
                    action: .redirect(9)),
                // An IPv4-only pod sends no IPv6 at all.
                IngressRule(priority: 100, etherType: IngressRule.allProtocols, action: .drop),
            ])
        #expect(
            TapGuard.rules(mac: "garbage", addresses: [], redirectTo: 9).map(\.action) == [.drop], "no MAC: nothing out"
        )
    }

    /// A dual-stack pod: IPv6 only from its own address, its EUI-64 link-local and the unspecified
    /// address (those two for ICMPv6 only); no router advertisement or redirect; a neighbour
    /// advertisement only for its own address, from it.
    @Test func aDualStackPodSendsIPv6OnlyAsItself() {
        let rules = TapGuard.rules(mac: "0e:ab:2e:6e:8d:74", addresses: ["10.213.5.7/24", "fd00::7/64"], redirectTo: 9)
        let v6 = rules.filter { $0.etherType == 0x86dd }
        let own = TapGuard.words([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7], at: 8)
        let linkLocal = TapGuard.words(
            [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x0c, 0xab, 0x2e, 0xff, 0xfe, 0x6e, 0x8d, 0x74], at: 8)
        let icmp = IngressRule.Key(value: 58 << 8, mask: 0x0000_ff00, offset: 4)
        func type(_ t: UInt32) -> IngressRule.Key { .init(value: t << 24, mask: 0xff00_0000, offset: 40) }
        let keys = v6.map { Array($0.keys.dropFirst(2)) }  // after the source MAC
        #expect(v6.first?.action == .drop && keys.first == [icmp, type(134)], "router advertisements dropped first")
        #expect(v6.dropFirst().first?.action == .drop && keys.dropFirst().first == [icmp, type(137)])
        let allowed = zip(v6, keys).filter { $0.0.action == .redirect(9) }.map(\.1)
        #expect(allowed.contains(own), "its own address")
        #expect(allowed.contains([icmp] + linkLocal), "its link-local, ICMPv6 only")
        #expect(!allowed.contains(linkLocal), "not any protocol from its link-local")
        #expect(allowed.filter { $0.contains(type(136)) }.count == 2, "advertisements of its two addresses only")
        let first = v6.first?.priority ?? 0
        #expect(v6.map(\.priority) == Array(first..<(first + UInt16(v6.count))), "one priority each, in order")
        #expect(rules.last == IngressRule(priority: 100, etherType: IngressRule.allProtocols, action: .drop))
    }

    @Test func thePodsIdentityFiles() {
        let dns = PodDNS(
            servers: ["10.96.0.10"], searches: ["ns.svc.cluster.local", "svc.cluster.local"], options: ["ndots:5"])
        #expect(
            PodIdentity.resolvConf(pod: dns, result: nil)
                == "search ns.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n")
        let fromResult = PodDNS(servers: ["10.1.0.10"], searches: [], options: [])
        #expect(PodIdentity.resolvConf(pod: nil, result: fromResult) == "nameserver 10.1.0.10\n")
        let hosts = PodIdentity.hosts(hostname: "web-0", ips: ["10.1.0.5", "fd00::5"])
        #expect(hosts.hasPrefix("127.0.0.1\tlocalhost\n") && hosts.hasSuffix("10.1.0.5\tweb-0\nfd00::5\tweb-0\n"))
    }

    @Test func podNetworkFieldsAreChecked() throws {
        func request(_ edit: (inout Runtime_V1_PodSandboxConfig) -> Void) -> Runtime_V1_RunPodSandboxRequest {
            .with {
                $0.config.metadata = .with { m in
                    m.name = "p"
                    m.uid = "u"
                    m.namespace = "n"
                }
                edit(&$0.config)
            }
        }
        // NODE network reaches the manager (a native handler runs it; a VM handler refuses it there).
        let node = request { $0.linux.securityContext.namespaceOptions.network = .node }
        #expect(try PodSandboxRequest.validate(node).hostNetwork)
        #expect(try !PodSandboxRequest.validate(request { _ in }).hostNetwork)
        let ports = request {
            $0.portMappings = [
                .with {
                    $0.containerPort = 80
                    $0.hostPort = 8080
                    $0.protocol = .udp
                }, .with { $0.containerPort = 81 },
            ]
            $0.dnsConfig = .with { $0.servers = ["10.96.0.10"] }
            $0.annotations = ["kubernetes.io/egress-bandwidth": "10M"]
        }
        let run = try PodSandboxRequest.validate(ports)
        #expect(
            run.portMappings == [PortMapping(hostPort: 8080, containerPort: 80, protocol: "udp")],
            "no host port: not published")
        #expect(run.dns?.servers == ["10.96.0.10"] && run.bandwidth?.egressRate == 10_000_000)
        for bad in [
            request { $0.portMappings = [.with { $0.containerPort = 0 }] },
            request { $0.dnsConfig = .with { $0.servers = ["resolver.example"] } },
            request { $0.dnsConfig = .with { $0.options = ["ndots:5\nnameserver 1.2.3.4"] } },
            request { $0.hostname = "a b" },
            request { $0.annotations = ["kubernetes.io/ingress-bandwidth": "fast"] },
        ] {
            #expect(throws: CocoonError.self) { try PodSandboxRequest.validate(bad) }
        }
    }
}
