import AgentAPI
import AgentService
import Glibc
import Netlink

/// The pod's interface inside the guest: the virtio NIC whose MAC the host gave (the CNI
/// interface's), brought up with the CNI result's MTU, addresses and routes. A VM restored from a
/// template finds its NIC by the template's MAC and takes the pod's.
enum GuestNetwork {
    static func configure(_ nic: Cocoon_Agent_V4_PodInterface, templateMAC: String?) throws(AgentFailure) {
        let mac = nic.mac.lowercased()
        guard isMAC(mac) else { throw .invalid("interface.mac \"\(nic.mac)\" is not a MAC address") }
        let current = templateMAC?.lowercased() ?? mac
        guard isMAC(current) else { throw .invalid("restored.template_mac \"\(current)\" is not a MAC address") }
        guard (68...65535).contains(nic.mtu) else { throw .invalid("interface.mtu \(nic.mtu) is not 68...65535") }
        guard nic.addresses.count <= 16, nic.routes.count <= 64 else {
            throw .invalid("interface: at most 16 addresses and 64 routes")
        }
        do throws(NetlinkError) {
            let netlink = try NetlinkSocket()
            // The NIC is probed when virtio_net loads at boot; give a slow guest a moment more.
            var link: LinkInfo?
            for _ in 0..<100 {
                link = try netlink.links().first { $0.mac.lowercased() == current }
                if link != nil { break }
                usleep(20_000)
            }
            guard let link else { throw NetlinkError("no network interface with MAC \(current) in the guest") }
            try netlink.configureLink(index: link.index, mtu: Int(nic.mtu), mac: current == mac ? nil : mac)
            for address in nic.addresses { try netlink.addAddress(address, index: link.index) }
            for route in nic.routes {
                try netlink.addRoute(
                    destination: route.destination, gateway: route.gateway.isEmpty ? nil : route.gateway,
                    index: link.index)
            }
            log("network: \(link.name) \(mac) mtu \(nic.mtu) \(nic.addresses.joined(separator: " "))")
        } catch {
            throw .internal("pod network interface: \(error)")
        }
    }

    private static func isMAC(_ mac: String) -> Bool {
        let hex = Set("0123456789abcdef")
        let parts = mac.split(separator: ":", omittingEmptySubsequences: false)
        return mac.count == 17 && parts.count == 6 && parts.allSatisfy { $0.count == 2 && $0.allSatisfy(hex.contains) }
    }
}

/// The files every container of the pod sees as /etc/hostname, /etc/hosts and /etc/resolv.conf
/// unless it mounts its own (what containerd keeps per sandbox), kept under /run/cocoon/pod.
enum PodIdentityFiles {
    static var directory: String { HostMode.runDir + "/pod" }
    static let limit = 64 << 10

    /// (file in the guest, path in the container)
    static let targets = [
        ("hostname", "/etc/hostname"), ("hosts", "/etc/hosts"), ("resolv.conf", "/etc/resolv.conf"),
    ]

    static func write(_ r: Cocoon_Agent_V4_ConfigurePodRequest) throws(AgentFailure) {
        let contents = ["hostname": r.hostname, "hosts": r.hosts, "resolv.conf": r.resolvConf]
        for (name, text) in contents where !text.isEmpty {
            guard text.utf8.count <= limit, !text.contains("\0") else {
                throw .invalid("\(name) must be text of at most \(limit) bytes")
            }
        }
        mkdirs(directory)
        for (name, text) in contents.sorted(by: { $0.key < $1.key }) where !text.isEmpty {
            let path = directory + "/" + name
            let fd = open(path + ".tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o644)
            guard fd >= 0 else { throw .internal("\(path): \(SystemError("open"))") }
            let written = text.withCString { Glibc.write(fd, $0, strlen($0)) }
            close(fd)
            guard written == text.utf8.count, rename(path + ".tmp", path) == 0 else {
                throw .internal("\(path): \(SystemError("write"))")
            }
        }
        if !r.hostname.isEmpty {
            let name = r.hostname.split(separator: "\n").first.map(String.init) ?? ""
            if !name.isEmpty, name.utf8.count <= 64 { _ = sethostname(name, name.utf8.count) }
        }
    }

    /// The identity files a container gets: those written, minus the destinations it mounts itself.
    static func mounts(excluding destinations: Set<String>) -> [(source: String, destination: String)] {
        targets.compactMap { name, target in
            let source = directory + "/" + name
            guard !destinations.contains(target), access(source, F_OK) == 0 else { return nil }
            return (source, target)
        }
    }
}
