/// The seam between pod sandboxes and whatever gives pods their network: one namespace per pod
/// with an interface the pod's VM is wired to. `CNIPodNetwork` is the real one.
public protocol PodNetworking: Sendable {
    /// Whether pods can get a network now (a CNI configuration loads), and why not.
    func readiness() async -> NetworkReadiness
    /// Creates the pod's namespace, runs CNI ADD and makes the VM's tap where `tap` says (wired at
    /// once inside the namespace, or left in the host for the hypervisor to open by name and
    /// `adoptHostTap` to move). On failure nothing is left (no namespace, no CNI allocation).
    func setUp(_ request: PodNetworkRequest, tap: TapPlacement) async throws(CNIError) -> PodNetworkAttachment
    /// Moves a `.host` tap the hypervisor has opened into the pod's namespace and wires it.
    func adoptHostTap(_ state: PodNetworkState) async throws(CNIError)
    /// CNI DEL for the pod (idempotent: also when its namespace or VM is gone, or it was never set up).
    func tearDown(podID: String, _ state: PodNetworkState) async throws(CNIError)
    /// Removes the pod's namespace (after `tearDown`), and its host tap if it never moved.
    func removeNamespace(_ state: PodNetworkState) async
    /// CNI CHECK of a pod found again after a daemon restart.
    func check(podID: String, _ state: PodNetworkState) async throws(CNIError)
}

/// Where the VM's tap is made: inside the pod's namespace, handed to the hypervisor as an open
/// descriptor (QEMU), or as a named tap in the host for a hypervisor that opens it itself (libvirt).
public enum TapPlacement: Sendable, Equatable {
    case podNamespace
    case host(name: String)
    /// A tap that exists already in the host's namespace, held open by a VM restored ahead of time
    /// (a warm pool's): moved into the pod's namespace by `adoptHostTap`.
    case existingHost(name: String)
    /// No tap: the pod's processes join the namespace and use its interface (native pods).
    case none
}

public struct NetworkReadiness: Sendable, Equatable {
    public var ready: Bool
    public var message: String
    /// The configuration in use (its network name and file), when ready.
    public var network: String?
    public init(ready: Bool, message: String, network: String? = nil) {
        self.ready = ready
        self.message = message
        self.network = network
    }
}

/// What a pod asks of the network, from its CRI config.
public struct PodNetworkRequest: Sendable {
    public var podID: String
    public var name: String
    public var namespace: String
    public var uid: String
    public var portMappings: [PortMapping]
    /// `dns` capability (servers, searches, options), when the pod config has DNS settings.
    public var dns: PodDNS?
    /// `bandwidth` capability, from the `kubernetes.io/{ingress,egress}-bandwidth` annotations.
    public var bandwidth: Bandwidth?

    public init(
        podID: String, name: String, namespace: String, uid: String, portMappings: [PortMapping] = [],
        dns: PodDNS? = nil, bandwidth: Bandwidth? = nil
    ) {
        self.podID = podID
        self.name = name
        self.namespace = namespace
        self.uid = uid
        self.portMappings = portMappings
        self.dns = dns
        self.bandwidth = bandwidth
    }
}

/// One `hostPort` of the pod (CRI `PortMapping`), as the `portmap` plugin takes it.
public struct PortMapping: Sendable, Codable, Equatable {
    public var hostPort: Int
    public var containerPort: Int
    /// "tcp", "udp" or "sctp".
    public var `protocol`: String
    public var hostIP: String

    public init(hostPort: Int, containerPort: Int, protocol: String, hostIP: String = "") {
        self.hostPort = hostPort
        self.containerPort = containerPort
        self.protocol = `protocol`
        self.hostIP = hostIP
    }
}

/// The pod's DNS settings (CRI `DNSConfig`).
public struct PodDNS: Sendable, Codable, Equatable {
    public var servers: [String]
    public var searches: [String]
    public var options: [String]
    public init(servers: [String], searches: [String], options: [String]) {
        self.servers = servers
        self.searches = searches
        self.options = options
    }
}

/// Traffic shaping for the `bandwidth` plugin, in bits per second and bits.
public struct Bandwidth: Sendable, Codable, Equatable {
    public var ingressRate: UInt64?
    public var ingressBurst: UInt64?
    public var egressRate: UInt64?
    public var egressBurst: UInt64?
    public init(ingressRate: UInt64? = nil, egressRate: UInt64? = nil) {
        self.ingressRate = ingressRate
        self.egressRate = egressRate
        // As containerd: a burst the plugin accepts whatever the rate (math.MaxUint32 bits).
        self.ingressBurst = ingressRate.map { _ in UInt64(UInt32.max) }
        self.egressBurst = egressRate.map { _ in UInt64(UInt32.max) }
    }
}

/// A pod's network as persisted with its sandbox: enough to configure the guest and to undo it all.
public struct PodNetworkState: Sendable, Codable, Equatable {
    public struct Route: Sendable, Codable, Equatable {
        public var destination: String
        public var gateway: String?
        public init(destination: String, gateway: String?) {
            self.destination = destination
            self.gateway = gateway
        }
    }
    /// The namespace's name under /var/run/netns.
    public var namespace: String
    /// The CNI network (its name) ADD ran on.
    public var network: String
    public var ifName: String
    /// The CNI interface's MAC (the VM's NIC takes it) and MTU.
    public var mac: String
    public var mtu: Int
    /// The pod's addresses (CIDR), IPv4 first.
    public var addresses: [String]
    public var routes: [Route]
    /// DNS settings the CNI result carried (used when the pod config has none).
    public var resultDNS: PodDNS?
    /// CNI DEL has run (StopPodSandbox); the namespace may still be there until removal.
    public var deleted: Bool = false
    /// The host tap a hypervisor opened by name before it moved into the namespace (libvirt).
    public var hostTap: String?
    /// Where set-up time went (shown by `inspectp`, read by `scripts/bench network`).
    public var timing: NetworkTiming?

    public init(
        namespace: String, network: String, ifName: String, mac: String, mtu: Int, addresses: [String],
        routes: [Route], resultDNS: PodDNS? = nil
    ) {
        self.namespace = namespace
        self.network = network
        self.ifName = ifName
        self.mac = mac
        self.mtu = mtu
        self.addresses = addresses
        self.routes = routes
        self.resultDNS = resultDNS
    }

    /// The pod's IPs without prefix, IPv4 first.
    public var ips: [String] { addresses.map(IPAddressText.address(ofCIDR:)) }
}

/// Milliseconds of one pod's network set-up: creating its namespace, the CNI plugins' ADD, and
/// Cocoon's tap and tc wiring.
public struct NetworkTiming: Sendable, Codable, Equatable {
    public var namespaceMs: Double
    public var pluginsMs: Double
    public var wiringMs: Double
    public init(namespaceMs: Double, pluginsMs: Double, wiringMs: Double) {
        self.namespaceMs = namespaceMs
        self.pluginsMs = pluginsMs
        self.wiringMs = wiringMs
    }
}

/// A pod's network just set up: its state and the open tap for its VM (the caller closes it once
/// the VM has its copy).
public struct PodNetworkAttachment: Sendable {
    public var state: PodNetworkState
    public var tapFD: Int32
    public init(state: PodNetworkState, tapFD: Int32) {
        self.state = state
        self.tapFD = tapFD
    }
}
