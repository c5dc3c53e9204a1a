import Foundation

/// Tells systemd how the daemon stands, for a `Type=notify` unit (sd_notify's datagram protocol on
/// `$NOTIFY_SOCKET`): `READY=1` once the CRI socket listens with its final mode, `STOPPING=1` when a
/// signal starts the shutdown, and `WATCHDOG=1` every half of the unit's `WatchdogSec` while the
/// daemon runs. Without `$NOTIFY_SOCKET` (not started by systemd) it does nothing.
struct SystemdNotifier: Sendable {
    /// The socket's path (`@name`: an abstract socket), or nil.
    let socketPath: String?
    /// How often to pet the watchdog: half of `$WATCHDOG_USEC`, when `$WATCHDOG_PID` is unset or ours.
    let watchdogInterval: Duration?

    init(environment: [String: String] = ProcessInfo.processInfo.environment, pid: Int32 = getpid()) {
        let path = environment["NOTIFY_SOCKET"] ?? ""
        socketPath = path.hasPrefix("/") || path.hasPrefix("@") ? path : nil
        let forUs = environment["WATCHDOG_PID"].map { Int32($0) == pid } ?? true
        if let usec = environment["WATCHDOG_USEC"].flatMap({ UInt64($0) }), usec > 0, forUs, socketPath != nil {
            watchdogInterval = .microseconds(usec / 2)
        } else {
            watchdogInterval = nil
        }
    }

    /// Sends one notification (newline-separated `KEY=value` lines); false when it could not.
    @discardableResult
    func notify(_ state: String) -> Bool {
        guard let socketPath else { return false }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var name = Array(socketPath.utf8)
        if name.first == UInt8(ascii: "@") { name[0] = 0 }  // abstract: a leading NUL, no terminator
        guard name.count < MemoryLayout.size(ofValue: address.sun_path) else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, b) in name.enumerated() { raw[i] = b }
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + name.count + (name.first == 0 ? 0 : 1))
        let bytes = Array(state.utf8)
        let sent = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sockaddr in
                bytes.withUnsafeBytes { sendto(fd, $0.baseAddress, bytes.count, Int32(MSG_NOSIGNAL), sockaddr, length) }
            }
        }
        return sent == bytes.count
    }

    /// Pets the watchdog until the task is cancelled (nothing to do without a watchdog).
    func watchdog() async {
        guard let interval = watchdogInterval else { return }
        while !Task.isCancelled {
            notify("WATCHDOG=1")
            // try?: cancellation ends the loop
            try? await Task.sleep(for: interval)
        }
    }
}
