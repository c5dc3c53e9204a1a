import Foundation
import Netlink

/// What the guest may send into the pod network, enforced on the tap's ingress before anything
/// reaches the CNI interface: frames from the pod's own MAC only; ARP and IPv4 only from the pod's
/// own IPv4 addresses; IPv6 only for a pod that has an IPv6 address, only from its own addresses
/// (its link-local and the unspecified address for ICMPv6 only: neighbour discovery and MLD), never
/// a router advertisement or redirect, and a neighbour advertisement only for its own addresses.
/// A guest that owns its kernel can change its MAC or IP at will; without this it could poison the
/// bridge's forwarding table or other pods' ARP and neighbour caches, take their traffic, or act
/// as the router. Everything else is dropped. (Pure: the rules are unit-tested, the kernel
/// enforces them.)
public enum TapGuard {
    /// The tap's ingress filters, in priority order; `to` is the CNI interface's index. `addresses`
    /// are the pod's CNI addresses (IPv4 and IPv6, with or without a prefix length).
    public static func rules(mac: String, addresses: [String], redirectTo to: Int32) -> [IngressRule] {
        guard let source = sourceMACKeys(mac) else {
            return [IngressRule(priority: 100, etherType: IngressRule.allProtocols, action: .drop)]
        }
        var rules: [IngressRule] = []
        var priority: UInt16 = 1
        for address in addresses.compactMap(octets) {
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
        let global = addresses.compactMap(ipv6)
        if !global.isEmpty, let linkLocal = linkLocal(mac) {
            rules += ipv6Rules(source: source, global: global, linkLocal: linkLocal, from: priority, to: to)
        }
        rules.append(IngressRule(priority: 100, etherType: IngressRule.allProtocols, action: .drop))
        return rules
    }

    /// IPv6 for a pod with IPv6 addresses. Offsets from the IPv6 header: next header at 6, source
    /// at 8, ICMPv6 type at 40 and a neighbour advertisement's target at 48 (an ICMPv6 message
    /// behind extension headers matches no allow rule, so it is dropped too).
    static func ipv6Rules(
        source: [IngressRule.Key], global: [[UInt8]], linkLocal: [UInt8], from first: UInt16, to: Int32
    ) -> [IngressRule] {
        let icmp = IngressRule.Key(value: 58 << 8, mask: 0x0000_ff00, offset: 4)
        func type(_ t: UInt32) -> IngressRule.Key { IngressRule.Key(value: t << 24, mask: 0xff00_0000, offset: 40) }
        var rules: [IngressRule] = []
        var priority = first
        func add(_ keys: [IngressRule.Key], _ action: IngressRule.Action) {
            rules.append(IngressRule(priority: priority, etherType: 0x86dd, keys: source + keys, action: action))
            priority += 1
        }
        add([icmp, type(134)], .drop)  // router advertisement
        add([icmp, type(137)], .drop)  // redirect
        // A neighbour advertisement only for one of its own addresses, from that address (as the
        // kernel sends one).
        for own in global + [linkLocal] {
            add([icmp, type(136)] + words(own, at: 8) + words(own, at: 48), .redirect(to))
        }
        add([icmp, type(136)], .drop)  // a neighbour advertisement for an address not the pod's
        for own in global { add(words(own, at: 8), .redirect(to)) }
        add([icmp] + words(linkLocal, at: 8), .redirect(to))
        add([icmp] + words([UInt8](repeating: 0, count: 16), at: 8), .redirect(to))  // DAD, MLD before it
        return rules
    }

    /// A 16-byte address as four keys from `offset`.
    static func words(_ address: [UInt8], at offset: Int32) -> [IngressRule.Key] {
        (0..<4).map { i in
            let b = address[(i * 4)..<(i * 4 + 4)].map(UInt32.init)
            return IngressRule.Key(
                value: b[0] << 24 | b[1] << 16 | b[2] << 8 | b[3], mask: 0xffff_ffff, offset: offset + Int32(i * 4))
        }
    }

    /// The source MAC's keys: its first four bytes at -8, its last two at -4.
    static func sourceMACKeys(_ mac: String) -> [IngressRule.Key]? {
        guard let bytes = macBytes(mac) else { return nil }
        let high = UInt32(bytes[0]) << 24 | UInt32(bytes[1]) << 16 | UInt32(bytes[2]) << 8 | UInt32(bytes[3])
        let low = UInt32(bytes[4]) << 24 | UInt32(bytes[5]) << 16
        return [
            IngressRule.Key(value: high, mask: 0xffff_ffff, offset: -8),
            IngressRule.Key(value: low, mask: 0xffff_0000, offset: -4),
        ]
    }

    static func macBytes(_ mac: String) -> [UInt8]? {
        let parts = mac.split(separator: ":", omittingEmptySubsequences: false)
        let bytes = parts.compactMap { $0.count == 2 ? UInt8($0, radix: 16) : nil }
        return bytes.count == 6 && parts.count == 6 ? bytes : nil
    }

    /// The link-local address the guest kernel forms from the MAC (EUI-64, fe80::/64).
    static func linkLocal(_ mac: String) -> [UInt8]? {
        guard let m = macBytes(mac) else { return nil }
        return [0xfe, 0x80, 0, 0, 0, 0, 0, 0, m[0] ^ 0x02, m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]]
    }

    /// "10.0.0.5" (or "10.0.0.5/24") -> its four bytes; nil for anything else (IPv6).
    static func octets(_ text: String) -> [UInt8]? {
        var addr = in_addr()
        guard inet_pton(AF_INET, IPAddressText.address(ofCIDR: text), &addr) == 1 else { return nil }
        return withUnsafeBytes(of: addr.s_addr) { Array($0) }
    }

    /// "fd00::5" (or "fd00::5/64") -> its 16 bytes; nil for anything else.
    static func ipv6(_ text: String) -> [UInt8]? {
        var addr = in6_addr()
        guard inet_pton(AF_INET6, IPAddressText.address(ofCIDR: text), &addr) == 1 else { return nil }
        return withUnsafeBytes(of: addr) { Array($0) }
    }
}
