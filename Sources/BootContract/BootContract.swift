/// What the host and the guest agree on at boot, written once for both sides: the `cocoon.*`
/// kernel command-line keys the host writes and the agent reads, the virtio-serial port name and
/// the vsock port of the agent, and how the host addresses the agent. (The guest's C /init,
/// `guest-agent/init/cocoon-init.c`, reads `cocoon.bus` and `cocoon.probe` with the same names.)
public enum BootContract {
    /// The kernel command-line keys of Cocoon's boot settings.
    public enum Key: String, Sendable, CaseIterable {
        case transport = "cocoon.transport"
        case vsockPort = "cocoon.vsock_port"
        case bus = "cocoon.bus"
        /// `cocoon.probe=1`: /init prints the probe marker and powers off (the KVM probe).
        case probe = "cocoon.probe"
    }

    /// How the agent's channel reaches the host.
    public enum Transport: String, Sendable, Codable { case serial, vsock }

    /// Which virtio transport the VM's devices sit on: `mmio` (microvm) or `pci` (q35).
    public enum Bus: String, Sendable, Codable { case mmio, pci }

    /// The virtio-serial port name the agent opens.
    public static let agentPortName = "cocoon.agent"
    /// The vsock port the agent listens on.
    public static let agentVsockPort: UInt32 = 1024
    /// The fw_cfg file that carries the VM's agent token (`-fw_cfg name=...,file=...`): the guest
    /// reads it at each host session; on the host it comes from a file only cocoond can read, never from the
    /// command line (which every host user can see).
    public static let agentTokenFwCfgName = "opt/io.cocoon/agent-token"
    /// The token's length in bytes (random, one per VM).
    public static let agentTokenBytes = 32
    /// The virtio-fs tag of a pod's shared directory (its volumes), and where the guest mounts it.
    public static let sharedFSTag = "cocoon"
    public static let sharedFSGuestPath = "/run/cocoon/shared"

    /// The MAC of a template VM's NIC (locally administered): every clone resumes with it, and its
    /// agent gives that NIC the pod's MAC.
    public static let templateMAC = "02:cc:00:00:00:01"

    /// The line /init prints for the KVM probe before it powers off.
    public static let probeMarker = "COCOON-PROBE-OK"

    /// The agent's boot settings, as the host writes them and the agent reads them.
    public struct Settings: Sendable, Equatable {
        public var transport: Transport
        public var vsockPort: UInt32
        public var bus: Bus

        public init(transport: Transport = .serial, vsockPort: UInt32 = BootContract.agentVsockPort, bus: Bus = .mmio) {
            self.transport = transport
            self.vsockPort = vsockPort
            self.bus = bus
        }

        /// The `key=value` words for the kernel command line.
        public var arguments: [String] {
            var words = ["\(Key.transport.rawValue)=\(transport.rawValue)"]
            if transport == .vsock { words.append("\(Key.vsockPort.rawValue)=\(vsockPort)") }
            words.append("\(Key.bus.rawValue)=\(bus.rawValue)")
            return words
        }

        /// The settings in a kernel command line; absent or unknown values keep their defaults.
        public static func parse(_ commandLine: String) -> Settings {
            var result = Settings()
            for word in commandLine.split(whereSeparator: { $0 == " " || $0 == "\n" }) {
                let parts = word.split(separator: "=", maxSplits: 1).map(String.init)
                guard parts.count == 2, let key = Key(rawValue: parts[0]) else { continue }
                switch key {
                case .transport: result.transport = Transport(rawValue: parts[1]) ?? result.transport
                case .vsockPort: result.vsockPort = UInt32(parts[1]) ?? result.vsockPort
                case .bus: result.bus = Bus(rawValue: parts[1]) ?? result.bus
                case .probe: break
                }
            }
            return result
        }
    }
}

/// Who the guest agent takes a vsock connection from: the host (CID 2), from a privileged source
/// port (below 1024: binding one needs CAP_NET_BIND_SERVICE, which cocoond has and other local
/// users do not). The host connects from one (`cocoon_vsock_connect_privileged`).
public enum VsockPeer {
    public static let hostCID: UInt32 = 2
    public static let privilegedBelow: UInt32 = 1024

    public static func isHost(cid: UInt32, port: UInt32) -> Bool { cid == hostCID && port < privilegedBelow }
}

/// How the host reaches the guest agent of one VM.
public enum AgentEndpoint: Sendable, Codable, Equatable {
    /// A virtio-serial port whose host side is this Unix socket.
    case serial(path: String)
    /// An AF_VSOCK address (vhost-vsock).
    case vsock(cid: UInt32, port: UInt32)
}
