import AgentAPI
import Glibc
import Netlink

/// The pod's interface inside the guest: the virtio NIC whose MAC the host gave (the CNI
/// interface's), brought up with the CNI result's MTU, addresses and routes.
enum GuestNetwork {
    static func configure(_ nic: Cocoon_Agent_V4_PodInterface) throws(AgentFailure) {
        let mac = nic.mac.lowercased()
        let hex = Set("0123456789abcdef")
        guard mac.count == 17, mac.split(separator: ":").count == 6,
            mac.split(separator: ":").allSatisfy({ $0.count == 2 && $0.allSatisfy(hex.contains) })
        else {
            throw .invalid("interface.mac \"\(nic.mac)\" is not a MAC address")
        }
        guard (68...65535).contains(nic.mtu) else { throw .invalid("interface.mtu \(nic.mtu) is not 68...65535") }
        guard nic.addresses.count <= 16, nic.routes.count <= 64 else {
            throw .invalid("interface: at most 16 addresses and 64 routes")
        }
        do throws(NetlinkError) {
            let netlink = try NetlinkSocket()
            // The NIC is probed when virtio_net loads at boot; give a slow guest a moment more.
            var link: LinkInfo?
            for _ in 0..<100 {
                link = try netlink.links().first { $0.mac.lowercased() == mac }
                if link != nil { break }
                usleep(20_000)
            }
            guard let link else { throw NetlinkError("no network interface with MAC \(mac) in the guest") }
            try netlink.configureLink(index: link.index, mtu: Int(nic.mtu))
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
}

/// The files every container of the pod sees as /etc/hostname, /etc/hosts and /etc/resolv.conf
/// unless it mounts its own (what containerd keeps per sandbox), kept under /run/cocoon/pod.
enum PodIdentityFiles {
    static let directory = "/run/cocoon/pod"
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
