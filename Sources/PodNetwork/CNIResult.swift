import Foundation

/// A plugin's ADD result (CNI 0.3.x/0.4.0 and 1.x formats: the same keys, 0.x adds `version` to
/// each IP), kept raw for `prevResult` and the DEL cache, and read for the pod's addresses.
public struct CNIResult: Sendable, Equatable {
    public struct Interface: Codable, Sendable, Equatable {
        public var name: String
        public var mac: String?
        public var sandbox: String?
    }
    public struct IPConfig: Codable, Sendable, Equatable {
        /// CIDR: "10.88.0.5/16".
        public var address: String
        public var gateway: String?
        /// Index into `interfaces`.
        public var interface: Int?
    }
    public struct Route: Codable, Sendable, Equatable {
        public var dst: String
        public var gw: String?
    }
    public struct DNS: Codable, Sendable, Equatable {
        public var nameservers: [String]?
        public var domain: String?
        public var search: [String]?
        public var options: [String]?
    }
    private struct Body: Codable {
        var cniVersion: String?
        var interfaces: [Interface]?
        var ips: [IPConfig]?
        var routes: [Route]?
        var dns: DNS?
    }

    public var raw: JSONValue
    public var cniVersion: String
    public var interfaces: [Interface]
    public var ips: [IPConfig]
    public var routes: [Route]
    public var dns: DNS?

    public static func parse(_ data: Data, plugin: String) throws(CNIError) -> CNIResult {
        guard let raw = JSONValue.parse(data), raw.object != nil else {
            throw .plugin(
                "CNI plugin \(plugin) returned no JSON result: \(String(decoding: data.prefix(300), as: UTF8.self))")
        }
        let body: Body
        do {
            body = try JSONDecoder().decode(Body.self, from: data)
        } catch {
            throw .plugin("CNI plugin \(plugin) returned a result Cocoon cannot read: \(error)")
        }
        guard let version = body.cniVersion, CNINetworkList.supportedVersions.contains(version) else {
            throw .plugin("CNI plugin \(plugin) returned a result of cniVersion \"\(body.cniVersion ?? "")\"")
        }
        let interfaces = body.interfaces ?? []
        let ips = body.ips ?? []
        for ip in ips {
            guard IPAddressText.isCIDR(ip.address) else {
                throw .plugin("CNI plugin \(plugin) returned \"\(ip.address)\", not an address/prefix")
            }
            if let i = ip.interface, !interfaces.indices.contains(i) {
                throw .plugin("CNI plugin \(plugin) returned an IP of interface #\(i), which it does not list")
            }
        }
        return CNIResult(
            raw: raw, cniVersion: version, interfaces: interfaces, ips: ips, routes: body.routes ?? [], dns: body.dns)
    }

    /// The addresses of the interface inside the pod's namespace (the one with a `sandbox`), IPv4
    /// first; every IP when the result names no interfaces.
    public var podIPs: [IPConfig] {
        let inSandbox = ips.filter { ip in
            guard let i = ip.interface else { return true }
            return !(interfaces[i].sandbox ?? "").isEmpty
        }
        return inSandbox.sorted { a, b in !a.address.contains(":") && b.address.contains(":") }
    }
}

/// Checks on address text from plugins and configs.
public enum IPAddressText {
    /// "10.0.0.2/24" or "fd00::2/64".
    public static func isCIDR(_ text: String) -> Bool {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let bits = Int(parts[1]), isAddress(String(parts[0])) else { return false }
        return bits >= 0 && bits <= (parts[0].contains(":") ? 128 : 32)
    }

    public static func isAddress(_ text: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, text, &v4) == 1 || inet_pton(AF_INET6, text, &v6) == 1
    }

    /// The address part of a CIDR.
    public static func address(ofCIDR text: String) -> String {
        String(text.split(separator: "/").first ?? Substring(text))
    }
}
