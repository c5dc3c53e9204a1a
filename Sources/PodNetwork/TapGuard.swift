import Foundation
import Netlink

/// What the guest may send into the pod network, enforced on the tap's ingress before anything
/// reaches the CNI interface: frames from the pod's own MAC only, and ARP and IPv4 only from the
/// pod's own IPv4 addresses. A guest that owns its kernel can change its MAC or IP at will; without
/// this it could poison the bridge's forwarding table or other pods' ARP caches and take their
/// traffic. Everything else is dropped. (Pure: the rules are unit-tested, the kernel enforces them.)
public enum TapGuard {
    /// The tap's ingress filters, in priority order; `to` is the CNI interface's index.
    public static func rules(mac: String, ipv4: [String], redirectTo to: Int32) -> [IngressRule] {
        guard let source = sourceMACKeys(mac) else {
            return [IngressRule(priority: 100, etherType: IngressRule.allProtocols, action: .drop)]
        }
        var rules: [IngressRule] = []
        var priority: UInt16 = 1
        for address in ipv4.compactMap(octets) {
            let ip = UInt32(address[0]) << 24 | UInt32(address[1]) << 16 | UInt32(address[2]) << 8 | UInt32(address[3])
            // ARP (Ethernet/IPv4): the sender protocol address spans bytes 14-17 of the ARP header.
            let arp = [
                IngressRule.Key(value: ip >> 16, mask: 0x0000_ffff, offset: 12),
                IngressRule.Key(value: (ip & 0xffff) << 16, mask: 0xffff_0000, offset: 16),
            ]
            rules.append(IngressRule(priority: priority, etherType: 0x0806, keys: source + arp, action: .redirect(to)))
            // IPv4: the source address at byte 12 of the IP header.
            let saddr = IngressRule.Key(value: ip, mask: 0xffff_ffff, offset: 12)
            rules.append(
                IngressRule(priority: priority + 1, etherType: 0x0800, keys: source + [saddr], action: .redirect(to)))
            priority += 2
        }
        // IPv6 from the pod's MAC (its link-local and neighbour discovery need more than its CNI address).
        rules.append(IngressRule(priority: priority, etherType: 0x86dd, keys: source, action: .redirect(to)))
        rules.append(IngressRule(priority: 100, etherType: IngressRule.allProtocols, action: .drop))
        return rules
    }

    /// The source MAC's keys: its first four bytes at -8, its last two at -4.
    static func sourceMACKeys(_ mac: String) -> [IngressRule.Key]? {
        let bytes = mac.split(separator: ":").compactMap { UInt8($0, radix: 16) }
        guard bytes.count == 6, mac.split(separator: ":").count == 6 else { return nil }
        let high = UInt32(bytes[0]) << 24 | UInt32(bytes[1]) << 16 | UInt32(bytes[2]) << 8 | UInt32(bytes[3])
        let low = UInt32(bytes[4]) << 24 | UInt32(bytes[5]) << 16
        return [
            IngressRule.Key(value: high, mask: 0xffff_ffff, offset: -8),
            IngressRule.Key(value: low, mask: 0xffff_0000, offset: -4),
        ]
    }

    /// "10.0.0.5" (or "10.0.0.5/24") -> its four bytes; nil for anything else (IPv6).
    static func octets(_ text: String) -> [UInt8]? {
        var addr = in_addr()
        guard inet_pton(AF_INET, IPAddressText.address(ofCIDR: text), &addr) == 1 else { return nil }
        return withUnsafeBytes(of: addr.s_addr) { Array($0) }
    }
}
