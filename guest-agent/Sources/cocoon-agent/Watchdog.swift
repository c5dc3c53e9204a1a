import CAgentSys

/// Names what the agent is busy with for the hung-request detector (watchdog.c): a request that
/// has not finished within `seconds` is reported on the console with the kernel stacks of the
/// agent and its children, every `seconds` until it finishes. The host gives StartContainer 30 s;
/// a report at 10 s says where the time goes before the host gives up.
enum Watchdog {
    static let seconds: UInt32 = 10
    nonisolated(unsafe) private static var current: String?

    static func arm(_ what: String) {
        current = what
        cocoon_watchdog_arm(what, seconds)
    }

    /// Adds a detail to what is watched (its report clock starts again). Outside a request (an
    /// event being sent), the detail is watched alone until `endNote`.
    static func note(_ detail: String) {
        cocoon_watchdog_arm(current.map { $0 + ": " + detail } ?? detail, seconds)
    }

    /// The noted wait is over: back to the request, or to nothing.
    static func endNote() {
        if let current { cocoon_watchdog_arm(current, seconds) } else { cocoon_watchdog_disarm() }
    }

    static func disarm() {
        current = nil
        cocoon_watchdog_disarm()
    }
}
