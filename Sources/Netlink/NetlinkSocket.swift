import CNetlink
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
        NetlinkError("\(what): \(String(cString: nl_geterror(code)))", code: code)
    }

    /// The kernel lacks what was asked for (a tc action or classifier module): ENOENT from tc.
    public var isMissingKernelSupport: Bool { code == -NLE_OBJ_NOTFOUND }
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

/// Owns one route-netlink socket (libnl) and speaks to the network namespace it was created in:
/// links, addresses, routes and tc. Not thread-safe: one owner uses it and lets it go.
public final class NetlinkSocket {
    let sock: OpaquePointer

    /// A socket in the caller's network namespace.
    public init() throws(NetlinkError) {
        guard let sock = nl_socket_alloc() else { throw NetlinkError("nl_socket_alloc failed") }
        let rc = nl_connect(sock, NETLINK_ROUTE)
        guard rc == 0 else {
            nl_socket_free(sock)
            throw .libnl("connect to route netlink", rc)
        }
        self.sock = sock
    }

    /// Takes over a fresh, unbound NETLINK_ROUTE socket (e.g. made inside a pod's namespace).
    public init(adopting fd: Int32) throws(NetlinkError) {
        guard let sock = nl_socket_alloc() else {
            close(fd)
            throw NetlinkError("nl_socket_alloc failed")
        }
        let rc = nl_socket_set_fd(sock, NETLINK_ROUTE, fd)
        guard rc == 0 else {
            nl_socket_free(sock)
            close(fd)
            throw .libnl("adopt a netlink socket", rc)
        }
        self.sock = sock
    }

    deinit { nl_socket_free(sock) }  // closes the descriptor

    // MARK: links

    public func link(named name: String) throws(NetlinkError) -> LinkInfo {
        var link: OpaquePointer?
        let rc = rtnl_link_get_kernel(sock, 0, name, &link)
        guard rc == 0, let link else { throw .libnl("interface \(name)", rc) }
        defer { rtnl_link_put(link) }
        return Self.info(link)
    }

    /// Every interface of the namespace.
    public func links() throws(NetlinkError) -> [LinkInfo] {
        var cache: OpaquePointer?
        let rc = rtnl_link_alloc_cache(sock, AF_UNSPEC, &cache)
        guard rc == 0, let cache else { throw .libnl("list interfaces", rc) }
        defer { nl_cache_free(cache) }
        var result: [LinkInfo] = []
        var object = nl_cache_get_first(cache)
        while let current = object {
            result.append(Self.info(current))
            object = nl_cache_get_next(current)
        }
        return result
    }

    /// Sets what is given (MTU, MAC) and brings the interface up.
    public func configureLink(index: Int32, mtu: Int? = nil, mac: String? = nil, up: Bool = true)
        throws(NetlinkError)
    {
        let addr = try mac.map { m throws(NetlinkError) in try Self.parse(m, family: AF_LLC) }
        defer { if let addr { nl_addr_put(addr) } }
        try changeLink(index, "configure") { change in
            if let mtu { rtnl_link_set_mtu(change, UInt32(mtu)) }
            if let addr { rtnl_link_set_addr(change, addr) }
            if up { rtnl_link_set_flags(change, UInt32(IFF_UP)) }
        }
    }

    /// Moves the interface into the namespace open at `namespaceFD`, renamed to `name` there.
    public func move(index: Int32, toNamespace namespaceFD: Int32, renamedTo name: String) throws(NetlinkError) {
        try changeLink(index, "move to another namespace") { change in
            rtnl_link_set_ns_fd(change, namespaceFD)
            rtnl_link_set_name(change, name)
        }
    }

    /// One RTM_NEWLINK/SETLINK on interface `index` with the attributes `edit` sets.
    private func changeLink(_ index: Int32, _ what: String, _ edit: (OpaquePointer) -> Void) throws(NetlinkError) {
        var original: OpaquePointer?
        var rc = rtnl_link_get_kernel(sock, index, nil, &original)
        guard rc == 0, let original else { throw .libnl("interface #\(index)", rc) }
        defer { rtnl_link_put(original) }
        guard let change = rtnl_link_alloc() else { throw NetlinkError("rtnl_link_alloc failed") }
        defer { rtnl_link_put(change) }
        edit(change)
        rc = rtnl_link_change(sock, original, change, 0)
        guard rc == 0 else { throw .libnl("\(what) interface #\(index)", rc) }
    }

    /// A veth pair, both ends down, in this socket's namespace.
    public func addVethPair(_ name: String, peer: String) throws(NetlinkError) {
        guard let link = rtnl_link_veth_alloc() else { throw NetlinkError("rtnl_link_veth_alloc failed") }
        defer { rtnl_link_put(link) }
        rtnl_link_set_name(link, name)
        if let other = rtnl_link_veth_get_peer(link) {
            rtnl_link_set_name(other, peer)
            rtnl_link_put(other)
        }
        let rc = rtnl_link_add(sock, link, NLM_F_CREATE | NLM_F_EXCL)
        guard rc == 0 || rc == -NLE_EXIST else { throw .libnl("add veth \(name)", rc) }
    }

    /// Deletes the interface (a tap or a veth); one already gone is fine.
    public func deleteLink(named name: String) throws(NetlinkError) {
        guard let link = rtnl_link_alloc() else { throw NetlinkError("rtnl_link_alloc failed") }
        defer { rtnl_link_put(link) }
        rtnl_link_set_name(link, name)
        let rc = rtnl_link_delete(sock, link)
        guard rc == 0 || rc == -NLE_OBJ_NOTFOUND || rc == -NLE_NODEV else { throw .libnl("delete \(name)", rc) }
    }

    // MARK: addresses and routes

    /// Adds `cidr` ("10.0.0.2/24", "fd00::2/64") to the interface; an address already there is kept.
    public func addAddress(_ cidr: String, index: Int32) throws(NetlinkError) {
        let local = try Self.parse(cidr, family: AF_UNSPEC)
        defer { nl_addr_put(local) }
        guard let addr = rtnl_addr_alloc() else { throw NetlinkError("rtnl_addr_alloc failed") }
        defer { rtnl_addr_put(addr) }
        rtnl_addr_set_ifindex(addr, index)
        var rc = rtnl_addr_set_local(addr, local)
        guard rc == 0 else { throw .libnl("address \(cidr)", rc) }
        rtnl_addr_set_prefixlen(addr, Int32(nl_addr_get_prefixlen(local)))
        rc = rtnl_addr_add(sock, addr, 0)
        guard rc == 0 || rc == -NLE_EXIST else { throw .libnl("add address \(cidr)", rc) }
    }

    /// Adds a route to `destination` (a CIDR; "0.0.0.0/0" or "::/0" for the default) through
    /// `gateway`, or on the link when there is none; a route already there is kept.
    public func addRoute(destination: String, gateway: String?, index: Int32) throws(NetlinkError) {
        let dst = try Self.parse(destination, family: AF_UNSPEC)
        defer { nl_addr_put(dst) }
        guard let route = rtnl_route_alloc(), let hop = rtnl_route_nh_alloc() else {
            throw NetlinkError("rtnl_route_alloc failed")
        }
        defer { rtnl_route_put(route) }
        rtnl_route_set_family(route, UInt8(nl_addr_get_family(dst)))
        var rc = rtnl_route_set_dst(route, dst)
        guard rc == 0 else {
            rtnl_route_nh_free(hop)
            throw .libnl("route to \(destination)", rc)
        }
        rtnl_route_set_table(route, UInt32(RT_TABLE_MAIN.rawValue))
        rtnl_route_set_protocol(route, UInt8(RTPROT_BOOT))
        rtnl_route_nh_set_ifindex(hop, index)
        if let gateway {
            let gw = try Self.parse(gateway, family: nl_addr_get_family(dst))
            defer { nl_addr_put(gw) }
            rtnl_route_nh_set_gateway(hop, gw)
            rtnl_route_set_scope(route, UInt8(RT_SCOPE_UNIVERSE.rawValue))
        } else {
            rtnl_route_set_scope(route, UInt8(RT_SCOPE_LINK.rawValue))
        }
        rtnl_route_add_nexthop(route, hop)  // the route owns the hop from here
        rc = rtnl_route_add(sock, route, 0)
        guard rc == 0 || rc == -NLE_EXIST else {
            throw .libnl("add route to \(destination)\(gateway.map { " via \($0)" } ?? "")", rc)
        }
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
        guard let qdisc = rtnl_qdisc_alloc() else { throw NetlinkError("rtnl_qdisc_alloc failed") }
        defer { rtnl_qdisc_put(qdisc) }
        let qtc = cocoon_qdisc_tc(qdisc)
        rtnl_tc_set_ifindex(qtc, index)
        var rc = rtnl_tc_set_kind(qtc, "ingress")
        guard rc == 0 else { throw .libnl("ingress qdisc", rc) }
        rtnl_tc_set_parent(qtc, TC_H_INGRESS)
        rtnl_tc_set_handle(qtc, cocoon_tc_handle(0xffff, 0))
        rc = rtnl_qdisc_add(sock, qdisc, NLM_F_CREATE)
        guard rc == 0 || rc == -NLE_EXIST else { throw .libnl("add an ingress qdisc on interface #\(index)", rc) }
    }

    /// A u32 filter on the interface's ingress (u32 is on every kernel; matchall is a module some
    /// hosts lack): packets of `etherType` matching every key get the rule's action.
    public func addIngressFilter(index: Int32, _ rule: IngressRule) throws(NetlinkError) {
        guard let filter = rtnl_cls_alloc(), let action = rtnl_act_alloc() else {
            throw NetlinkError("rtnl_cls_alloc failed")
        }
        defer {
            rtnl_cls_put(filter)
            rtnl_act_put(action)
        }
        let ftc = cocoon_cls_tc(filter)
        rtnl_tc_set_ifindex(ftc, index)
        var rc = rtnl_tc_set_kind(ftc, "u32")
        guard rc == 0 else { throw .libnl("u32 filter", rc) }
        rtnl_tc_set_parent(ftc, cocoon_tc_handle(0xffff, 0))
        rtnl_cls_set_prio(filter, rule.priority)
        rtnl_cls_set_protocol(filter, rule.etherType)
        // No key matches every packet: u32 needs one, so value 0 under mask 0.
        for key in rule.keys.isEmpty ? [IngressRule.Key(value: 0, mask: 0, offset: 0)] : rule.keys {
            rc = rtnl_u32_add_key_uint32(filter, key.value, key.mask, key.offset, 0)
            guard rc == 0 else { throw .libnl("u32 key", rc) }
        }
        rtnl_u32_set_cls_terminal(filter)
        switch rule.action {
        case .redirect(let to):
            rc = rtnl_tc_set_kind(cocoon_act_tc(action), "mirred")
            guard rc == 0 else { throw .libnl("mirred action", rc) }
            rtnl_mirred_set_action(action, TCA_EGRESS_REDIR)
            rtnl_mirred_set_policy(action, TC_ACT_STOLEN)
            rtnl_mirred_set_ifindex(action, UInt32(to))
        case .drop:
            rc = rtnl_tc_set_kind(cocoon_act_tc(action), "gact")
            guard rc == 0 else { throw .libnl("gact action", rc) }
            rtnl_gact_set_action(action, TC_ACT_SHOT)
        }
        rc = rtnl_u32_add_action(filter, action)
        guard rc == 0 else { throw .libnl("u32 action", rc) }
        rc = rtnl_cls_add(sock, filter, NLM_F_CREATE)
        guard rc == 0 else { throw .libnl("ingress filter (priority \(rule.priority)) on interface #\(index)", rc) }
    }

    // MARK: helpers

    private static func info(_ link: OpaquePointer) -> LinkInfo {
        var buffer = [CChar](repeating: 0, count: 64)
        var mac = ""
        if let addr = rtnl_link_get_addr(link) {
            mac = String(cString: nl_addr2str(addr, &buffer, buffer.count))
        }
        let name = rtnl_link_get_name(link).map { String(cString: $0) } ?? ""
        return LinkInfo(index: rtnl_link_get_ifindex(link), name: name, mac: mac, mtu: Int(rtnl_link_get_mtu(link)))
    }

    private static func parse(_ text: String, family: Int32) throws(NetlinkError) -> OpaquePointer {
        var addr: OpaquePointer?
        let rc = nl_addr_parse(text, family, &addr)
        guard rc == 0, let addr else { throw .libnl("address \"\(text)\"", rc) }
        return addr
    }
}
