/// When a signal can reach a container's first process. When that process is PID 1 of its PID
/// namespace (not so in a shared one: the pod's, the node's), the kernel drops any signal sent to
/// it from outside unless it has a handler installed (SIGKILL and SIGSTOP excepted). A stop that
/// arrives before the program has installed its SIGTERM handler would be lost and the container
/// killed only at the end of its grace period; so the sender waits until the process catches the
/// signal (`SigCgt` in /proc/PID/status), then sends it once.
public enum SignalDelivery {
    public enum Decision: Equatable, Sendable {
        /// Send it now: it will be acted on (caught, ignored by choice, or not blockable).
        case now
        /// Hold it: PID 1 has the default disposition, so the kernel would drop it.
        case wait
    }

    /// The decision for `signal` to a namespace's PID 1 whose /proc/PID/status is `status`.
    public static func decide(signal: Int32, pid1Status status: String) -> Decision {
        if signal == 9 || signal == 19 { return .now }  // SIGKILL, SIGSTOP
        // In a PID namespace it shares, the process is not its PID 1: the default action applies.
        if let inner = innermostPID(status), inner != 1 { return .now }
        guard signal >= 1, signal <= 64, let masks = masks(status) else { return .now }
        let bit = UInt64(1) << UInt64(signal - 1)
        return (masks.caught | masks.ignored) & bit != 0 ? .now : .wait
    }

    /// The process's pid in its own PID namespace (the last field of `NSpid:`), when the status has it.
    public static func innermostPID(_ status: String) -> Int? {
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("NSpid:") }) else { return nil }
        return line.dropFirst(6).split(whereSeparator: { $0 == " " || $0 == "\t" }).last.flatMap { Int($0) }
    }

    /// The caught and ignored signal masks of a /proc/PID/status text, or nil when they are missing.
    public static func masks(_ status: String) -> (caught: UInt64, ignored: UInt64)? {
        var caught: UInt64?
        var ignored: UInt64?
        for line in status.split(separator: "\n") {
            if line.hasPrefix("SigCgt:") {
                caught = UInt64(String(line.dropFirst(7).filter { !$0.isWhitespace }), radix: 16)
            }
            if line.hasPrefix("SigIgn:") {
                ignored = UInt64(String(line.dropFirst(7).filter { !$0.isWhitespace }), radix: 16)
            }
        }
        guard let caught, let ignored else { return nil }
        return (caught, ignored)
    }
}
