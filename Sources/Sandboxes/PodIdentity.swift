import Foundation
import PodNetwork

/// The identity files of a pod (what containerd writes per sandbox): /etc/resolv.conf from the pod's
/// DNS settings, /etc/hosts with its name and IPs, /etc/hostname. Pure functions, unit-tested.
public enum PodIdentity {
    /// resolv.conf from the pod's `dns_config`; else the DNS of the CNI result; else the host's
    /// (containerd's fallback).
    public static func resolvConf(pod: PodDNS?, result: PodDNS?, hostFile: String = "/etc/resolv.conf") -> String {
        guard let dns = pod ?? result else {
            let host = FileManager.default.contents(atPath: hostFile).map {
                String(decoding: $0.prefix(64 << 10), as: UTF8.self)
            }
            return host ?? ""
        }
        var lines: [String] = []
        if !dns.searches.isEmpty { lines.append("search " + dns.searches.joined(separator: " ")) }
        lines += dns.servers.map { "nameserver " + $0 }
        if !dns.options.isEmpty { lines.append("options " + dns.options.joined(separator: " ")) }
        return lines.joined(separator: "\n") + "\n"
    }

    /// /etc/hosts as a runtime writes it when the kubelet mounts none: localhost, the IPv6 names,
    /// and the pod's own IPs under its host name.
    public static func hosts(hostname: String, ips: [String]) -> String {
        var lines = [
            "127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback", "fe00::0\tip6-localnet",
            "ff00::0\tip6-mcastprefix", "ff02::1\tip6-allnodes", "ff02::2\tip6-allrouters",
        ]
        lines += ips.map { "\($0)\t\(hostname)" }
        return lines.joined(separator: "\n") + "\n"
    }
}
