import AgentClient
import ContainerLogs
import Errors
import Foundation
import Spawn

/// What the agents report and what follows from it: state changes through `ContainerRecord.transition`,
/// log output, exec output, lifecycle events, and the callers waiting for an exit.
extension ContainerManager {
    /// One agent event. Ids that are not containers of the pod that sent the event are ignored: a
    /// guest may lie, and must not touch another pod's containers.
    func apply(_ tagged: PodAgentEvent) async {
        switch tagged.event {
        case .output(let containerID, let execID, let stream, let data):
            guard records[containerID]?.sandboxID == tagged.podID else { return dropped(tagged, containerID) }
            let stream: CRILog.Stream = stream == .stderr ? .stderr : .stdout
            if execID.isEmpty {
                logs[containerID]?.write(stream: stream, data)
                routes.attachOutput(containerID, stream: stream, data)
            } else if !routes.execOutput(execID, pod: tagged.podID, container: containerID, stream: stream, data) {
                execs.output(execID, container: containerID, stream: stream, data)
            }
        case .exit(let containerID, let execID, let exitCode, let oomKilled, let exitedAtNs):
            guard records[containerID]?.sandboxID == tagged.podID else { return dropped(tagged, containerID) }
            if execID.isEmpty {
                let reason = oomKilled ? "OOMKilled" : (exitCode == 0 ? "Completed" : "Error")
                let message = records[containerID].flatMap(TerminationMessage.read)
                do {
                    try change(
                        containerID,
                        .exited(
                            code: exitCode, reason: reason, message: message,
                            atNs: Self.exitTime(
                                reported: exitedAtNs, startedAtNs: records[containerID]?.startedAtNs,
                                receivedAtNs: HostProcess.nowNs())))
                } catch {
                    // No caller to fail: the record in memory is right, the file is stale until the next save.
                    logger.error(
                        "container exit not persisted", metadata: ["id": "\(containerID)", "error": "\(error)"])
                }
            } else if !routes.execExited(execID, pod: tagged.podID, container: containerID, code: exitCode) {
                execs.exited(execID, container: containerID, code: exitCode)
            }
        case .portData(let connection, let data):
            routes.portData(connection, pod: tagged.podID, data)
        case .portClosed(let connection, let error):
            routes.portClosed(connection, pod: tagged.podID, error: error)
        case .disconnected(let reason):
            droppedEvents[tagged.podID] = nil  // counted per channel: kept no longer than the pod's
            let containers = records.values.filter { $0.sandboxID == tagged.podID }.map(\.id)
            let why = "lost the pod's agent: \(reason)"
            routes.podEnded(tagged.podID, containers: containers, reason: why)
            execs.podLost(containers: Set(containers), reason: why)
        }
    }

    /// An event about a container the sending pod does not have: dropped and counted.
    private func dropped(_ tagged: PodAgentEvent, _ containerID: String) {
        let count = droppedEvents[tagged.podID, default: 0] + 1
        droppedEvents[tagged.podID] = count
        if count == 1 || count % 1000 == 0 {
            logger.warning(
                "dropped agent events about containers not of their pod",
                metadata: [
                    "pod": "\(tagged.podID)", "container": "\(GuestText.printable(containerID, max: 160))",
                    "count": "\(count)",
                ])
        }
    }

    /// The one place a container's state changes: the transition, then the save, then what follows
    /// from it (log flush, waiters, lifecycle event). An event that does not apply changes nothing.
    func change(_ id: String, _ event: ContainerRecord.Event) throws(CocoonError) {
        guard var record = records[id], record.transition(event) else { return }
        records[id] = record
        if case .exited(let code, _, _, _) = event {
            routes.containerEnded(id, code: code)
            logs[id]?.finish()
            wakeExitWaiters(id)
        }
        publish(event.lifecycleKind, record)
        try store.save(record)
    }

    func publish(_ kind: ContainerEvent.Kind, _ record: ContainerRecord) {
        eventHub.publish(
            ContainerEvent(
                kind: kind, containerID: record.id, sandboxID: record.sandboxID, atNs: HostProcess.nowNs(),
                record: record))
    }

    /// True when the container exited within `timeout`.
    func waitForExit(_ id: String, timeout: Duration) async -> Bool {
        if records[id]?.state != .running { return true }
        return await withTaskGroup(of: Bool.self) { group -> Bool in
            group.addTask {
                await self.waitExit(id)
                return true
            }
            group.addTask {
                try? await Task.sleep(for: timeout)  // cancelled when the exit comes first
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            if !first { self.wakeExitWaiters(id) }
            return first && self.records[id]?.state != .running
        }
    }

    func waitExit(_ id: String) async {
        if records[id]?.state != .running { return }
        await withCheckedContinuation { exitWaiters[id, default: []].append($0) }
    }

    func wakeExitWaiters(_ id: String) {
        for waiter in exitWaiters.removeValue(forKey: id) ?? [] { waiter.resume() }
    }
}

extension ContainerManager {
    /// When a container ended: the time its agent reports (a native pod's agent ran on while no
    /// daemon did, and saw the real moment), kept within what the host itself knows of the process's
    /// life (after its start, not after the event came): a guest's clock is the guest's to set.
    public static func exitTime(reported: Int64, startedAtNs: Int64?, receivedAtNs: Int64) -> Int64 {
        guard reported > 0 else { return receivedAtNs }
        return min(max(reported, startedAtNs ?? receivedAtNs), receivedAtNs)
    }
}
