import Foundation
import Logging
import Models
import Spawn

/// Pod networks through the CNI plugins (containerd's model, with Kata's tap wiring for the VM):
/// one named namespace per pod, the configured plugin list run into it, a tap wired to the CNI
/// interface. Owns the configuration directory (read again when it changes) and the DEL cache.
public actor CNIPodNetwork: PodNetworking {
    /// `[cni]` of the daemon's configuration.
    public struct Settings: Sendable, Equatable {
        public var confDir: String
        public var binDirs: [String]
        public var pluginTimeout: Duration
        /// Where ADD results are cached for DEL (under the state root).
        public var cacheDir: String
        public init(confDir: String, binDirs: [String], pluginTimeout: Duration, cacheDir: String) {
            self.confDir = confDir
            self.binDirs = binDirs
            self.pluginTimeout = pluginTimeout
            self.cacheDir = cacheDir
        }
    }

    public static let ifName = "eth0"
    private var configs: CNIConfigDirectory
    private let ops: CNINetworkOps
    private let logger: Logger

    public init(_ settings: Settings, logger: Logger = Logger(label: "cocoon.network")) {
        configs = CNIConfigDirectory(path: settings.confDir)
        ops = CNINetworkOps(
            runner: CNIPluginRunner(binDirs: settings.binDirs, timeout: settings.pluginTimeout),
            cache: CNICache(directory: settings.cacheDir))
        self.logger = logger
    }

    /// The namespace name of a pod: `cocoon-` and the first 16 characters of its id.
    public static func namespaceName(podID: String) -> String { "cocoon-" + String(podID.prefix(16)) }

    public func readiness() -> NetworkReadiness {
        do {
            let list = try configs.current()
            return NetworkReadiness(ready: true, message: "", network: "\(list.name) (\(list.source))")
        } catch {
            return NetworkReadiness(ready: false, message: "cni plugin not initialized: \(error)")
        }
    }

    public func setUp(_ request: PodNetworkRequest, tap: TapPlacement) async throws(CNIError) -> PodNetworkAttachment {
        let list = try configs.current()
        let name = Self.namespaceName(podID: request.podID)
        if NetworkNamespace.exists(name: name)
            || FileManager.default.fileExists(atPath: NetworkNamespace.path(name: name))
        {
            NetworkNamespace.remove(name: name)  // a leftover of a crash: the pod id is new to the daemon
        }
        let clock = ContinuousClock()
        let started = clock.now
        try NetworkNamespace.create(name: name)
        let created = clock.now
        let rt = Self.runtimeConf(request, netns: NetworkNamespace.path(name: name))
        do throws(CNIError) {
            let result = try await ops.add(list, rt)
            let added = clock.now
            let addresses = result.podIPs.map(\.address)
            guard !addresses.isEmpty else {
                throw .plugin("CNI network \(list.name) (\(list.source)) gave the pod no IP address")
            }
            let nic = try await Self.offPool { () throws(CNIError) -> TapWiring.NIC in
                switch tap {
                case .podNamespace:
                    return try TapWiring.wire(netns: name, ifName: Self.ifName, addresses: addresses)
                case .host(let tapName):
                    let pod = try TapWiring.podInterface(netns: name, ifName: Self.ifName)
                    try TapWiring.createHostTap(tapName)
                    return TapWiring.NIC(tapFD: -1, mac: pod.mac, mtu: pod.mtu)
                case .existingHost, .none:
                    let pod = try TapWiring.podInterface(netns: name, ifName: Self.ifName)
                    return TapWiring.NIC(tapFD: -1, mac: pod.mac, mtu: pod.mtu)
                }
            }
            var state = PodNetworkState(
                namespace: name, network: list.name, ifName: Self.ifName, mac: nic.mac, mtu: nic.mtu,
                addresses: addresses, routes: Self.routes(result))
            switch tap {
            case .host(let tapName), .existingHost(let tapName): state.hostTap = tapName
            case .podNamespace, .none: break
            }
            state.timing = NetworkTiming(
                namespaceMs: Self.ms(created - started), pluginsMs: Self.ms(added - created),
                wiringMs: Self.ms(clock.now - added))
            if let dns = result.dns, !(dns.nameservers ?? []).isEmpty {
                state.resultDNS = PodDNS(
                    servers: dns.nameservers ?? [], searches: dns.search ?? [], options: dns.options ?? [])
            }
            return PodNetworkAttachment(state: state, tapFD: nic.tapFD)
        } catch {
            do throws(CNIError) {
                try await ops.del(network: list.name, rt, fallback: list)
            } catch let cleanup {
                logger.warning(
                    "CNI DEL after a failed ADD failed", metadata: ["pod": "\(request.podID)", "error": "\(cleanup)"])
            }
            NetworkNamespace.remove(name: name)
            if case .host(let tapName) = tap { TapWiring.deleteHostTap(tapName) }
            throw error
        }
    }

    public func adoptHostTap(_ state: PodNetworkState) async throws(CNIError) {
        guard let tapName = state.hostTap else { return }
        try await Self.offPool { () throws(CNIError) in
            try TapWiring.adoptHostTap(
                tapName, netns: state.namespace, ifName: state.ifName, addresses: state.addresses)
        }
    }

    public func tearDown(podID: String, _ state: PodNetworkState) async throws(CNIError) {
        let path = NetworkNamespace.path(name: state.namespace)
        // A namespace already gone: the plugins are called without one (they release what they hold).
        let netns = NetworkNamespace.exists(name: state.namespace) ? path : ""
        let rt = CNIRuntimeConf(containerID: podID, netns: netns, ifName: state.ifName, args: [], capabilityArgs: [:])
        let networks =
            state.network.isEmpty ? ops.cache.networks(containerID: podID, ifName: state.ifName) : [state.network]
        // try?: without a usable config the cache is all DEL has
        let current = try? configs.current()
        for network in networks {
            try await ops.del(network: network, rt, fallback: current?.name == network ? current : nil)
        }
    }

    public func removeNamespace(_ state: PodNetworkState) {
        NetworkNamespace.remove(name: state.namespace)
        if let tap = state.hostTap { TapWiring.deleteHostTap(tap) }  // still in the host if it never moved
    }

    public func check(podID: String, _ state: PodNetworkState) async throws(CNIError) {
        let rt = CNIRuntimeConf(
            containerID: podID, netns: NetworkNamespace.path(name: state.namespace), ifName: state.ifName, args: [],
            capabilityArgs: [:])
        try await ops.check(network: state.network, rt)
    }

    // MARK: pieces

    /// The CNI runtime configuration of a pod: its identity in CNI_ARGS (as the kubelet's
    /// dockershim and containerd set them) and its capability arguments.
    public static func runtimeConf(_ r: PodNetworkRequest, netns: String) -> CNIRuntimeConf {
        var caps: [String: JSONValue] = [:]
        caps["portMappings"] = .array(
            r.portMappings.map { m in
                var o: [String: JSONValue] = [
                    "hostPort": .number(Double(m.hostPort)), "containerPort": .number(Double(m.containerPort)),
                    "protocol": .string(m.protocol),
                ]
                if !m.hostIP.isEmpty { o["hostIP"] = .string(m.hostIP) }
                return .object(o)
            })
        if let dns = r.dns {
            caps["dns"] = .object([
                "servers": .array(dns.servers.map(JSONValue.string)),
                "searches": .array(dns.searches.map(JSONValue.string)),
                "options": .array(dns.options.map(JSONValue.string)),
            ])
        }
        if let b = r.bandwidth {
            var o: [String: JSONValue] = [:]
            for (key, value) in [
                ("ingressRate", b.ingressRate), ("ingressBurst", b.ingressBurst), ("egressRate", b.egressRate),
                ("egressBurst", b.egressBurst),
            ] {
                if let value { o[key] = .number(Double(value)) }
            }
            caps["bandwidth"] = .object(o)
        }
        return CNIRuntimeConf(
            containerID: r.podID, netns: netns, ifName: ifName,
            args: [
                ["K8S_POD_NAMESPACE", r.namespace], ["K8S_POD_NAME", r.name], ["K8S_POD_INFRA_CONTAINER_ID", r.podID],
                ["K8S_POD_UID", r.uid],
            ], capabilityArgs: caps)
    }

    /// The guest's routes: the result's, each without a gateway given the gateway of an address of
    /// its family (CNI: "a default gateway is assumed"); a default route by each address's gateway
    /// when the result has no route at all.
    static func routes(_ result: CNIResult) -> [PodNetworkState.Route] {
        let gateways = result.podIPs.compactMap(\.gateway)
        func gateway(for destination: String) -> String? {
            gateways.first { $0.contains(":") == destination.contains(":") }
        }
        if result.routes.isEmpty {
            return gateways.map {
                PodNetworkState.Route(destination: $0.contains(":") ? "::/0" : "0.0.0.0/0", gateway: $0)
            }
        }
        return result.routes.map { PodNetworkState.Route(destination: $0.dst, gateway: $0.gw ?? gateway(for: $0.dst)) }
    }

    private static func ms(_ d: Duration) -> Double { (d.milliseconds * 10).rounded() / 10 }

    private static func offPool<T: Sendable>(_ body: @escaping @Sendable () throws(CNIError) -> T)
        async throws(CNIError) -> T
    {
        try await OffPool.run(body)
    }
}
