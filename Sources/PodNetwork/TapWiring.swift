import CNetns
import Foundation
import Netlink

/// The VM's side of a pod network: in the pod's namespace, a tap for the VM and tc redirects
/// between it and the interface CNI made (Kata's "tcfilter" model), so the guest's NIC, given the
/// CNI interface's MAC and MTU, is the pod's interface; what leaves the guest is held to that MAC
/// and the pod's IPv4 addresses (`TapGuard`).
public enum TapWiring {
    public static let tapName = "tap0"
    /// Where dropped frames go on a kernel without tc's drop action: a veth left down.
    static let sinkName = "sink0"

    /// What the VM's NIC is given.
    public struct NIC: Sendable {
        /// The open tap (the caller hands it to QEMU and closes its copy); -1 for a tap the
        /// hypervisor opens by name.
        public var tapFD: Int32
        public var mac: String
        public var mtu: Int
    }

    /// Makes the tap inside namespace `netns` and wires it to `ifName` both ways; the tap lives as
    /// long as a descriptor of it is open. Blocking (netlink): run it off the cooperative pool.
    public static func wire(netns: String, ifName: String, addresses: [String]) throws(CNIError) -> NIC {
        let nsFD = try NetworkNamespace.openFD(name: netns)
        defer { close(nsFD) }
        let tap = cocoon_tap_in_netns(nsFD, tapName)
        guard tap >= 0 else { throw .wiring("tap \(tapName) in \(netns): \(String(cString: strerror(-tap)))") }
        do {
            let (mac, mtu) = try wireInside(nsFD, netns: netns, ifName: ifName, addresses: addresses)
            return NIC(tapFD: tap, mac: mac, mtu: mtu)
        } catch {
            close(tap)
            throw error
        }
    }

    /// The MAC and MTU of `ifName` inside `netns` (for a host tap made before the VM boots).
    public static func podInterface(netns: String, ifName: String) throws(CNIError) -> (mac: String, mtu: Int) {
        let nsFD = try NetworkNamespace.openFD(name: netns)
        defer { close(nsFD) }
        do throws(NetlinkError) {
            let link = try netlink(in: nsFD, netns).link(named: ifName)
            return (link.mac, link.mtu)
        } catch {
            throw .wiring("\(ifName) in \(netns): \(error)")
        }
    }

    /// Creates the persistent tap `name` in the host's namespace, for a hypervisor that opens its
    /// tap by name (libvirt's `<interface type='ethernet'>` with `managed='no'`).
    public static func createHostTap(_ name: String) throws(CNIError) {
        let rc = cocoon_host_tap_create(name)
        guard rc == 0 else { throw .wiring("host tap \(name): \(String(cString: strerror(rc)))") }
    }

    /// Makes the tap `name` in the host's namespace and returns its descriptor (it lives while a
    /// descriptor is open): a pool VM's, moved into its pod's namespace when a pod takes the VM.
    public static func openHostTap(_ name: String) throws(CNIError) -> Int32 {
        let nsFD = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC)
        guard nsFD >= 0 else { throw .wiring("host network namespace: \(String(cString: strerror(errno)))") }
        defer { close(nsFD) }
        let tap = cocoon_tap_in_netns(nsFD, name)
        guard tap >= 0 else { throw .wiring("host tap \(name): \(String(cString: strerror(-tap)))") }
        return tap
    }

    /// Moves the host tap `name` (the hypervisor has it open now) into `netns` as `tap0` and wires it.
    public static func adoptHostTap(_ name: String, netns: String, ifName: String, addresses: [String])
        throws(CNIError)
    {
        let nsFD = try NetworkNamespace.openFD(name: netns)
        defer { close(nsFD) }
        do throws(NetlinkError) {
            let host = try NetlinkSocket()
            try host.move(index: try host.link(named: name).index, toNamespace: nsFD, renamedTo: tapName)
        } catch {
            throw .wiring("move tap \(name) into \(netns): \(error)")
        }
        _ = try wireInside(nsFD, netns: netns, ifName: ifName, addresses: addresses)
    }

    /// Deletes a host tap made by `createHostTap` that never moved (a VM that did not boot).
    public static func deleteHostTap(_ name: String) {
        // try?: no netlink socket: nothing can be deleted, and a tap left over is harmless
        try? NetlinkSocket().deleteLink(named: name)
    }

    /// Into the guest: everything arriving on the CNI interface. Out of it: what `TapGuard` lets
    /// through (the pod's own MAC and addresses).
    private static func wireInside(_ nsFD: Int32, netns: String, ifName: String, addresses: [String])
        throws(CNIError) -> (String, Int)
    {
        do throws(NetlinkError) {
            let netlink = try netlink(in: nsFD, netns)
            let pod = try netlink.link(named: ifName)
            let tapLink = try netlink.link(named: tapName)
            try netlink.configureLink(index: tapLink.index, mtu: pod.mtu)
            try netlink.redirectIngress(from: pod.index, to: tapLink.index)
            try netlink.addIngressQdisc(index: tapLink.index)
            for rule in TapGuard.rules(mac: pod.mac, addresses: addresses, redirectTo: pod.index) {
                do {
                    try netlink.addIngressFilter(index: tapLink.index, rule)
                } catch  where rule.action == .drop && error.isMissingKernelSupport {
                    // No act_gact in this kernel: drop by redirecting to an interface that stays
                    // down (tc's mirred drops what it cannot send; the kernel notes it, rate-limited).
                    try netlink.addVethPair(sinkName, peer: sinkName + "p")
                    var sink = rule
                    sink.action = .redirect(try netlink.link(named: sinkName).index)
                    try netlink.addIngressFilter(index: tapLink.index, sink)
                }
            }
            return (pod.mac, pod.mtu)
        } catch {
            throw .wiring("wire \(tapName) to \(ifName) in \(netns): \(error)")
        }
    }

    private static func netlink(in nsFD: Int32, _ netns: String) throws(NetlinkError) -> NetlinkSocket {
        let socket = cocoon_netlink_in_netns(nsFD)
        guard socket >= 0 else {
            throw NetlinkError("netlink socket in \(netns): \(String(cString: strerror(-socket)))")
        }
        return try NetlinkSocket(adopting: socket)
    }
}
