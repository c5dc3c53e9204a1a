import CRIAPI
import Errors
import PodNetwork
import Sandboxes

/// The network fields of a `PodSandboxConfig`, checked: hostname, `port_mappings` (for the portmap
/// plugin), `dns_config` (the pod's resolv.conf) and the bandwidth annotations.
enum PodNetworkFields {
    static let ingressAnnotation = "kubernetes.io/ingress-bandwidth"
    static let egressAnnotation = "kubernetes.io/egress-bandwidth"

    static func validate(_ config: Runtime_V1_PodSandboxConfig, into run: inout RunRequest) throws(CocoonError) {
        let host = config.hostname
        guard host.utf8.count <= 253, !host.contains(where: { $0.isWhitespace || $0 == "\0" || $0 == "/" }) else {
            throw .invalidArgument("config.hostname \"\(host)\" is not a host name")
        }
        run.hostname = host
        try validatePortMappings(config, into: &run)
        if config.hasDnsConfig {
            try validateDNS(config.dnsConfig, into: &run)
        }
        let ingress = try config.annotations[ingressAnnotation].map { v throws(CocoonError) in
            try bandwidth(v, annotation: ingressAnnotation)
        }
        let egress = try config.annotations[egressAnnotation].map { v throws(CocoonError) in
            try bandwidth(v, annotation: egressAnnotation)
        }
        if ingress != nil || egress != nil { run.bandwidth = Bandwidth(ingressRate: ingress, egressRate: egress) }
    }

    /// Checks `port_mappings` and adds the ones that publish a host port to `run`.
    private static func validatePortMappings(_ config: Runtime_V1_PodSandboxConfig, into run: inout RunRequest)
        throws(CocoonError)
    {
        guard config.portMappings.count <= 256 else {
            throw .invalidArgument("config.port_mappings has \(config.portMappings.count) entries (at most 256)")
        }
        for (i, m) in config.portMappings.enumerated() {
            let field = "config.port_mappings[\(i)]"
            guard (1...65535).contains(m.containerPort) else {
                throw .invalidArgument("\(field).container_port \(m.containerPort) is not 1-65535")
            }
            guard (0...65535).contains(m.hostPort) else {
                throw .invalidArgument("\(field).host_port \(m.hostPort) is not 0-65535")
            }
            guard m.hostIp.isEmpty || IPAddressText.isAddress(m.hostIp) else {
                throw .invalidArgument("\(field).host_ip \"\(m.hostIp)\" is not an IP address")
            }
            let proto: String
            switch m.protocol {
            case .tcp: proto = "tcp"
            case .udp: proto = "udp"
            case .sctp: proto = "sctp"
            case .UNRECOGNIZED(let n): throw .invalidArgument("\(field).protocol \(n) is not TCP, UDP or SCTP")
            }
            // As containerd: a mapping without a host port publishes nothing.
            if m.hostPort > 0 {
                run.portMappings.append(
                    PortMapping(
                        hostPort: Int(m.hostPort), containerPort: Int(m.containerPort), protocol: proto,
                        hostIP: m.hostIp))
            }
        }
    }

    /// Checks `dns_config` and sets the pod's resolv.conf in `run` unless the config is empty.
    private static func validateDNS(_ dns: Runtime_V1_DNSConfig, into run: inout RunRequest) throws(CocoonError) {
        guard dns.servers.count <= 16, dns.searches.count <= 32, dns.options.count <= 32 else {
            throw .invalidArgument("config.dns_config: at most 16 servers, 32 searches and 32 options")
        }
        for server in dns.servers where !IPAddressText.isAddress(server) {
            throw .invalidArgument("config.dns_config.servers: \"\(server)\" is not an IP address")
        }
        for (field, values) in [("searches", dns.searches), ("options", dns.options)] {
            for value in values
            where value.isEmpty || value.utf8.count > 253
                || value.contains(where: { $0.isWhitespace || $0 == "\0" })
            {
                throw .invalidArgument(
                    "config.dns_config.\(field): \"\(value)\" must be one word of at most 253 bytes")
            }
        }
        if !(dns.servers.isEmpty && dns.searches.isEmpty && dns.options.isEmpty) {
            run.dns = PodDNS(servers: dns.servers, searches: dns.searches, options: dns.options)
        }
    }

    /// A Kubernetes quantity in bits per second ("10M", "1Gi", "500k").
    static func bandwidth(_ text: String, annotation: String) throws(CocoonError) -> UInt64 {
        let suffixes: [(String, Double)] = [
            ("Ki", 1024), ("Mi", 1_048_576), ("Gi", 1_073_741_824), ("Ti", 1_099_511_627_776), ("k", 1e3), ("M", 1e6),
            ("G", 1e9),
            ("T", 1e12),
        ]
        var number = Substring(text)
        var factor = 1.0
        if let (suffix, f) = suffixes.first(where: { text.hasSuffix($0.0) }) {
            number = text.dropLast(suffix.count)
            factor = f
        }
        guard let value = Double(number), value > 0, value * factor >= 1000, value * factor <= 1e15 else {
            throw .invalidArgument(
                "annotation \(annotation)=\"\(text)\" must be a rate like 10M (bits per second, at least 1k)")
        }
        return UInt64(value * factor)
    }
}
