import Foundation

/// Reads, over QMP, what a QEMU VM whose agent has stopped answering is doing: whether it runs,
/// whether its vCPU is halted with interrupts enabled, its local APIC's timer and pending vectors,
/// the IOAPIC lines waiting for an EOI, and how far each side has moved the agent channel's
/// virtio-serial queues. Read-only: nothing here changes the guest. One line, for a log and for
/// the error the caller returns.
enum QEMUStallProbe {
    /// The agent port's queues on the virtio-serial device: port 1 (port 0 is the console's, 2 and
    /// 3 the control queues), receive (host to guest) then transmit.
    static let agentQueues = [4, 5]

    static func report(qmp: String, pid: Int32) async -> String {
        let hmp = ["info registers", "info lapic", "info pic"].map {
            QMPClient.command("human-monitor-command", ["command-line": $0])
        }
        let replies = await QMPClient.run(
            [QMPClient.command("query-status"), QMPClient.command("x-query-virtio")] + hmp, socketPath: qmp,
            timeout: .seconds(2))
        guard let status = replies.first ?? nil else { return "QEMU did not answer QMP" }
        var parts = [Self.status(status)]
        let text = replies.dropFirst(2).map { $0.flatMap(Self.hmpText) ?? "" }
        parts.append(Self.cpu(text[0]))
        parts.append(Self.lapic(text[1]))
        parts.append(Self.ioapic(text[2]))
        if let serial = (replies[1]).flatMap(Self.serialPath) {
            let queues = await QMPClient.run(
                agentQueues.map {
                    QMPClient.command("x-query-virtio-queue-status", ["path": serial, "queue": $0])
                }, socketPath: qmp, timeout: .seconds(2))
            parts.append(Self.queues(zip(["rx", "tx"], queues).map { ($0, $1) }))
        }
        parts.append(Self.threads(pid: pid))
        return parts.filter { !$0.isEmpty }.joined(separator: "; ")
    }

    /// `stop` then `cont` on one QMP session, only while the VM runs (a paused or migrating VM is
    /// left as it is). Stopping kicks every vCPU out of its halt wait and resuming kicks them again,
    /// after which each one looks at its pending interrupts and expired timers afresh.
    static func kick(qmp: String) async -> Bool {
        guard let status = await QMPClient.execute("query-status", socketPath: qmp),
            Self.status(status) == "QEMU running"
        else { return false }
        let replies = await QMPClient.run(
            [QMPClient.command("stop"), QMPClient.command("cont")], socketPath: qmp, timeout: .seconds(2))
        if replies[0] != nil && replies[1] == nil {
            // Never leave the VM paused because the session broke between the two.
            _ = await QMPClient.execute("cont", socketPath: qmp)
        }
        return replies[1] != nil
    }

    /// The guest left its local APIC timer as its boot-time calibration set it up (masked,
    /// periodic, a count of 0xFFFFFFFF / 16): Linux found the timer "too slow" and gave it up before
    /// verifying it (a failed verification would have zeroed the count), on a loaded host, and fell
    /// back to the PIT as its clock event device. Under TCG that guest then sleeps through its own
    /// timers (seen in CI: a vCPU halted for minutes with a request waiting, kicks did not help).
    static func lapicTimerDefect(qmp: String) async -> String? {
        let reply =
            await QMPClient.run(
                [QMPClient.command("human-monitor-command", ["command-line": "info lapic"])], socketPath: qmp,
                timeout: .seconds(2)
            ).first ?? nil
        return reply.flatMap(hmpText).flatMap(lapicTimerDefect(in:))
    }

    static func lapicTimerDefect(in text: String) -> String? {
        let lines = words(text)
        guard let lvtt = lines.first(where: { $0.first == "LVTT" }), lvtt.contains("masked"),
            lvtt.contains("periodic"), let timer = lines.first(where: { $0.first == "Timer" }),
            timer.joined(separator: " ").contains("initial_count = 268435455")
        else { return nil }
        return "the guest kernel disabled its local APIC timer at boot (left as calibration set it up: "
            + lvtt.joined(separator: " ") + ")"
    }

    static func status(_ reply: String) -> String {
        guard let object = json(reply)?["return"] as? [String: Any], let status = object["status"] as? String else {
            return "QEMU status unknown"
        }
        return "QEMU \(status)"
    }

    /// `HLT=1` and the IF bit (0x200) of RFLAGS from `info registers`.
    static func cpu(_ text: String) -> String {
        guard let halted = field(text, "HLT="), let flags = field(text, "RFL=").flatMap({ Int($0, radix: 16) }) else {
            return ""
        }
        let rip = field(text, "RIP=") ?? "?"
        return "vCPU \(halted == "1" ? "halted" : "running") IF=\(flags & 0x200 != 0 ? 1 : 0) RIP=\(rip)"
    }

    /// The timer's line and the pending and in-service vectors from `info lapic`.
    static func lapic(_ text: String) -> String {
        let out = words(text).filter { ["LVTT", "Timer", "ISR", "IRR"].contains($0.first ?? "") }
        return out.isEmpty ? "" : "LAPIC " + out.map { $0.joined(separator: " ") }.joined(separator: ", ")
    }

    /// Each IOAPIC's `Remote IRR` line (level-triggered lines delivered and not yet acknowledged).
    static func ioapic(_ text: String) -> String {
        let remote = words(text).filter { $0.first == "IRR" || $0.starts(with: ["Remote", "IRR"]) }
        return remote.isEmpty ? "" : "IOAPIC " + remote.map { $0.joined(separator: " ") }.joined(separator: ", ")
    }

    static func serialPath(_ reply: String) -> String? {
        guard let devices = json(reply)?["return"] as? [[String: Any]] else { return nil }
        return devices.first { $0["name"] as? String == "virtio-serial" }?["path"] as? String
    }

    /// For each queue: the guest's available index (as QEMU last saw it), what QEMU has taken and
    /// used, and the last used index it signalled.
    static func queues(_ replies: [(String, String?)]) -> String {
        let items = replies.compactMap { name, reply -> String? in
            guard let q = reply.flatMap({ json($0)?["return"] as? [String: Any] }) else { return nil }
            let n = { (key: String) in (q[key] as? Int).map(String.init) ?? "?" }
            return "\(name) avail \(n("shadow-avail-idx")) taken \(n("last-avail-idx")) used \(n("used-idx")) "
                + "signalled \(n("signalled-used"))"
        }
        return items.isEmpty ? "" : "agent queues " + items.joined(separator: ", ")
    }

    /// Each QEMU thread's state and where the kernel holds it.
    static func threads(pid: Int32) -> String {
        let base = "/proc/\(pid)/task"
        guard let tasks = try? FileManager.default.contentsOfDirectory(atPath: base) else { return "" }
        let items = tasks.sorted().compactMap { tid -> String? in
            guard let comm = try? String(contentsOfFile: "\(base)/\(tid)/comm", encoding: .utf8),
                let stat = try? String(contentsOfFile: "\(base)/\(tid)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { return nil }
            let state = stat[stat.index(after: close)...].split(separator: " ").first.map(String.init) ?? "?"
            let wchan = (try? String(contentsOfFile: "\(base)/\(tid)/wchan", encoding: .utf8)) ?? "?"
            return "\(comm.trimmingCharacters(in: .whitespacesAndNewlines)) \(state) \(wchan)"
        }
        return items.isEmpty ? "" : "threads: " + items.joined(separator: ", ")
    }

    /// The monitor's text (lines end in CR LF, columns are tabs and runs of spaces) as each line's
    /// words.
    private static func words(_ text: String) -> [[Substring]] {
        text.split(whereSeparator: \.isNewline).map { $0.split(whereSeparator: \.isWhitespace) }
    }

    private static func hmpText(_ reply: String) -> String? { json(reply)?["return"] as? String }

    private static func json(_ text: String) -> [String: Any]? {
        (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any]
    }

    /// The value after `key` up to the next space or line end.
    private static func field(_ text: String, _ key: String) -> String? {
        guard let range = text.range(of: key) else { return nil }
        let rest = text[range.upperBound...]
        return String(rest.prefix { $0 != " " && !$0.isNewline })
    }
}
