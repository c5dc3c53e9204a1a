import CSpawn
import Foundation

/// Saving a template VM's device state and restoring a clone from it, through QMP (QEMU 7.2:
/// migration to and from a descriptor; `-sandbox spawn=deny` rules out `exec:`). RAM stays out of
/// the stream (`x-ignore-shared`): it is the template's memory file, which every clone maps.
enum QEMUMigration {
    /// The longest a save or a restore may take (a few milliseconds are usual: the state is ~50 KB).
    static let timeout: Duration = .seconds(30)

    /// Pauses the VM and writes its device state to `stateFD`.
    static func save(to stateFD: Int32, qmp: String, vm: String) async throws(HypervisorError) {
        let replies = await QMPClient.run(
            [
                QMPClient.command("getfd", ["fdname": "state"]),
                QMPClient.command("stop"),
                ignoreShared,
                QMPClient.command("migrate", ["uri": "fd:state"]),
            ], socketPath: qmp, passing: stateFD)
        try check(replies, "save the template state of \(vm)")
        try await waitForCompletion(qmp: qmp, vm: vm, what: "saving the template state")
    }

    /// Loads the device state `state` into a VM started with `-S -incoming defer` (through a memfd
    /// of its own: clones restored at once never share a file offset), then lets it run.
    static func restore(from state: Data, qmp: String, vm: String) async throws(HypervisorError) {
        let fd = cocoon_template_ram("cocoon-state", UInt64(state.count))
        guard fd >= 0 else {
            throw .bootFailed("\(vm): memfd for the template state: \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        let written = state.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        guard written == state.count else {
            throw .bootFailed("\(vm): cannot write the template state to a memfd")
        }
        let replies = await QMPClient.run(
            [
                QMPClient.command("getfd", ["fdname": "state"]),
                ignoreShared,
                QMPClient.command("migrate-incoming", ["uri": "fd:state"]),
            ], socketPath: qmp, passing: fd)
        try check(replies, "restore \(vm) from its template")
        try await waitForCompletion(qmp: qmp, vm: vm, what: "restoring from the template")
        try check(await QMPClient.run([QMPClient.command("cont")], socketPath: qmp), "resume \(vm)")
    }

    private static let ignoreShared = QMPClient.command(
        "migrate-set-capabilities", ["capabilities": [["capability": "x-ignore-shared", "state": true]]])

    private static func check(_ replies: [String?], _ what: String) throws(HypervisorError) {
        for reply in replies where reply == nil || reply?.contains("\"error\"") == true {
            throw .bootFailed("\(what): \(reply ?? "no answer from QEMU")")
        }
    }

    /// Polls `query-migrate` until it says completed (or failed, or the timeout passes).
    private static func waitForCompletion(qmp: String, vm: String, what: String) async throws(HypervisorError) {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while clock.now < deadline {
            let reply = await QMPClient.run([QMPClient.command("query-migrate")], socketPath: qmp).first ?? nil
            guard let reply else { throw .bootFailed("\(vm): QEMU stopped answering while \(what)") }
            if reply.contains("\"completed\"") { return }
            if reply.contains("\"failed\"") || reply.contains("\"cancelled\"") {
                throw .bootFailed("\(vm): \(what) failed: \(reply)")
            }
            // try?: cancellation ends the wait early; the deadline still applies
            try? await Task.sleep(for: .milliseconds(2))
        }
        throw .bootFailed("\(vm): \(what) did not finish within \(timeout)")
    }
}
