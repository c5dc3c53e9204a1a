import BootContract
import CAgentSys
import Glibc

/// The agent's end of the host link: a virtio-serial port (one byte stream that the host may
/// drop and reopen) or a vsock listener (one connection per host session).
enum AgentChannel {
    case serial(fd: Int32)
    case vsock(listenFD: Int32)
    /// A native pod's agent on the host: a Unix socket listener that only root may connect to.
    case unix(listenFD: Int32)

    /// One connection per host session (vsock, Unix) rather than one stream (serial).
    var listens: Bool {
        if case .serial = self { return false }
        return true
    }

    static func open(_ cmdline: BootContract.Settings) throws -> AgentChannel {
        switch cmdline.transport {
        case .vsock:
            let fd = cocoon_vsock_listen(cmdline.vsockPort, 4)
            guard fd >= 0 else { throw SystemError("vsock listen on port \(cmdline.vsockPort)") }
            return .vsock(listenFD: fd)
        case .serial:
            let device = try waitForPort(named: BootContract.agentPortName, timeoutMs: 20_000)
            // A port opens once: open it read-write a single time.
            let fd = Glibc.open(device, O_RDWR | O_NONBLOCK | O_CLOEXEC)
            guard fd >= 0 else { throw SystemError("open \(device)") }
            return .serial(fd: fd)
        }
    }

    /// A new connection from the host's root, or -1: anyone else is refused before a byte is read,
    /// and cannot hold the agent's one session. On vsock only the host's root (cocoond) can bind a
    /// privileged port; on a native pod's Unix socket the peer's credentials say who it is.
    func acceptHost(_ listenFD: Int32) -> Int32 {
        if case .unix = self { return HostMode.acceptRoot(listenFD) }
        var cid: UInt32 = 0
        var port: UInt32 = 0
        let conn = cocoon_accept_vsock(listenFD, &cid, &port)
        guard conn >= 0 else { return -1 }
        guard VsockPeer.isHost(cid: cid, port: port) else {
            log("refused a vsock connection from \(cid):\(port) (not the host's privileged port)")
            close(conn)
            return -1
        }
        return conn
    }

    /// Finds /dev/vportNpM whose sysfs name matches, waiting for the driver to probe it.
    private static func waitForPort(named name: String, timeoutMs: Int) throws -> String {
        var waited = 0
        while waited <= timeoutMs {
            for port in directoryEntries("/sys/class/virtio-ports") ?? [] where port.hasPrefix("vport") {
                let portName = readSmallFile("/sys/class/virtio-ports/\(port)/name")?
                    .trimmingCharacters(in: "\n ")
                if portName == name, access("/dev/\(port)", F_OK) == 0 {
                    return "/dev/\(port)"
                }
            }
            usleep(2_000)
            waited += 2
        }
        throw SystemError("virtio-serial port \(name) did not appear", ENODEV)
    }
}

extension String {
    func trimmingCharacters(in set: String) -> String {
        let chars = Set(set)
        var s = Substring(self)
        while let f = s.first, chars.contains(f) { s.removeFirst() }
        while let l = s.last, chars.contains(l) { s.removeLast() }
        return String(s)
    }
}
