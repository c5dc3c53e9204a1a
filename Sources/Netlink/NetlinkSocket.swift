import CNetlinkOps
import Glibc

/// Why a netlink request failed: what was asked and libnl's reason.
public struct NetlinkError: Error, CustomStringConvertible, Equatable {
    public let description: String
    /// libnl's error code (negative NLE_*), when libnl gave one.
    public let code: Int32?
    public init(_ description: String, code: Int32? = nil) {
        self.description = description
        self.code = code
    }

    static func libnl(_ what: String, _ code: Int32) -> NetlinkError {
        NetlinkError("\(what): \(String(cString: cocoon_nl_error(code)))", code: code)
    }

    /// The kernel lacks what was asked for (a tc action or classifier module).
    public var isMissingKernelSupport: Bool { code.map { cocoon_nl_is_missing_support($0) == 1 } ?? false }
}

/// One u32 filter on an interface's ingress: the packets it matches and what happens to them.
public struct IngressRule: Sendable, Equatable {
    /// 32 bits of the packet at `offset` from the network header (the Ethernet header starts at
    /// -14: destination MAC at -14, source MAC at -8, EtherType at -2), under `mask`, in host order.
    public struct Key: Sendable, Equatable {
        public var value: UInt32
        public var mask: UInt32
        public var offset: Int32
        public init(value: UInt32, mask: UInt32, offset: Int32) {
            self.value = value
            self.mask = mask
            self.offset = offset
        }
    }
    public enum Action: Sendable, Equatable {
        /// Out of the interface with this index.
        case redirect(Int32)
        case drop
    }
    /// ETH_P_ALL: every packet.
    public static let allProtocols: UInt16 = 0x0003
    /// Lower runs first.
    public var priority: UInt16
    /// ETH_P_ALL (`allProtocols`), ETH_P_IP, ETH_P_ARP, ETH_P_IPV6, ...
    public var etherType: UInt16
    /// All must match; none: every packet of `etherType`.
    public var keys: [Key]
    public var action: Action

    public init(priority: UInt16, etherType: UInt16, keys: [Key] = [], action: Action) {
        self.priority = priority
        self.etherType = etherType
        self.keys = keys
        self.action = action
    }
}

/// One interface as the kernel reports it.
public struct LinkInfo: Sendable, Equatable {
    public var index: Int32
    public var name: String
    /// "aa:bb:cc:dd:ee:ff"
    public var mac: String
    public var mtu: Int
}

/// Owns one route-netlink socket (libnl, behind `CNetlinkOps`) and speaks to the network namespace
/// it was created in: links, addresses, routes and tc. Not thread-safe: one owner uses it and lets it go.
public final class NetlinkSocket {
    let nl: OpaquePointer

    /// A socket in the caller's network namespace.
    public init() throws(NetlinkError) {
        var err: Int32 = 0
        guard let nl = cocoon_nl_open(-1, &err) else { throw .libnl("connect to route netlink", err) }
        self.nl = nl
    }

    /// Takes over a fresh, unbound NETLINK_ROUTE socket (e.g. made inside a pod's namespace).
    public init(adopting fd: Int32) throws(NetlinkError) {
        var err: Int32 = 0
        guard let nl = cocoon_nl_open(fd, &err) else { throw .libnl("adopt a netlink socket", err) }
        self.nl = nl
    }

    deinit { cocoon_nl_close(nl) }  // closes the descriptor

    private func check(_ rc: Int32, _ what: @autoclosure () -> String) throws(NetlinkError) {
        guard rc >= 0 else { throw .libnl(what(), rc) }
    }

    // MARK: links

    public func link(named name: String) throws(NetlinkError) -> LinkInfo {
        var link = cocoon_link()
        try check(cocoon_nl_link_by_name(nl, name, &link), "interface \(name)")
        return Self.info(link)
    }

    /// Every interface of the namespace (up to 256).
    public func links() throws(NetlinkError) -> [LinkInfo] {
        var buffer = [cocoon_link](repeating: cocoon_link(), count: 256)
        let n = cocoon_nl_links(nl, &buffer, Int32(buffer.count))
        try check(n, "list interfaces")
        return buffer.prefix(Int(n)).map(Self.info)
    }

    /// Sets what is given (MTU, MAC) and brings the interface up.
    public func configureLink(index: Int32, mtu: Int? = nil, mac: String? = nil, up: Bool = true)
        throws(NetlinkError)
    {
        try check(
            cocoon_nl_link_change(nl, index, UInt32(clamping: mtu ?? 0), mac, up ? 1 : 0, -1, nil),
            "configure interface #\(index)")
    }

    /// Moves the interface into the namespace open at `namespaceFD`, renamed to `name` there.
    public func move(index: Int32, toNamespace namespaceFD: Int32, renamedTo name: String) throws(NetlinkError) {
        try check(
            cocoon_nl_link_change(nl, index, 0, nil, 0, namespaceFD, name),
            "move interface #\(index) to another namespace")
    }

    /// A veth pair, both ends down, in this socket's namespace (one already there is kept).
    public func addVethPair(_ name: String, peer: String) throws(NetlinkError) {
        try check(cocoon_nl_veth_add(nl, name, peer), "add veth \(name)")
    }

    /// Deletes the interface (a tap or a veth); one already gone is fine.
    public func deleteLink(named name: String) throws(NetlinkError) {
        try check(cocoon_nl_link_delete(nl, name), "delete \(name)")
    }

    // MARK: addresses and routes

    /// Adds `cidr` ("10.0.0.2/24", "fd00::2/64") to the interface; an address already there is kept.
    public func addAddress(_ cidr: String, index: Int32) throws(NetlinkError) {
        try check(cocoon_nl_addr_add(nl, index, cidr), "add address \(cidr)")
    }

    /// Adds a route to `destination` (a CIDR; "0.0.0.0/0" or "::/0" for the default) through
    /// `gateway`, or on the link when there is none; a route already there is kept.
    public func addRoute(destination: String, gateway: String?, index: Int32) throws(NetlinkError) {
        try check(
            cocoon_nl_route_add(nl, index, destination, gateway),
            "add route to \(destination)\(gateway.map { " via \($0)" } ?? "")")
    }

    // MARK: tc

    /// Everything arriving on `from` leaves by `to` (an ingress qdisc on `from`, a catch-all u32
    /// filter with a mirred egress redirect): what Kata's "tcfilter" model puts between a pod's CNI
    /// interface and its VM's tap.
    public func redirectIngress(from: Int32, to: Int32) throws(NetlinkError) {
        try addIngressQdisc(index: from)
        try addIngressFilter(
            index: from, IngressRule(priority: 1, etherType: IngressRule.allProtocols, action: .redirect(to)))
    }

    /// The ingress qdisc filters hang on; one already there is kept.
    public func addIngressQdisc(index: Int32) throws(NetlinkError) {
        try check(cocoon_nl_ingress_qdisc(nl, index), "add an ingress qdisc on interface #\(index)")
    }

    /// A u32 filter on the interface's ingress (u32 is on every kernel; matchall is a module some
    /// hosts lack): packets of `etherType` matching every key get the rule's action.
    public func addIngressFilter(index: Int32, _ rule: IngressRule) throws(NetlinkError) {
        let keys = rule.keys.map { cocoon_u32_key(value: $0.value, mask: $0.mask, offset: $0.offset) }
        let target: Int32
        switch rule.action {
        case .redirect(let to): target = to
        case .drop: target = -1
        }
        try check(
            cocoon_nl_ingress_filter(nl, index, rule.priority, rule.etherType, keys, Int32(keys.count), target),
            "ingress filter (priority \(rule.priority)) on interface #\(index)")
    }

    // MARK: helpers

    private static func info(_ link: cocoon_link) -> LinkInfo {
        var copy = link
        let name = withUnsafeBytes(of: &copy.name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let mac = withUnsafeBytes(of: &copy.mac) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        return LinkInfo(index: link.index, name: name, mac: mac, mtu: Int(link.mtu))
    }
}
