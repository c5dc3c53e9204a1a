import AgentClient
import Errors
import Foundation
import Models
import Spawn

/// ExecSync: a command run to completion in a running container, its output collected.
extension ContainerManager {
    /// Runs a command in the running container and collects its output; `timeout` zero means none.
    public func execSync(_ idOrPrefix: String, command: [String], timeout: Duration) async throws(CocoonError)
        -> ExecResult
    {
        let id = try resolve(idOrPrefix)
        guard let record = records[id] else { throw .notFound("container \"\(idOrPrefix)\" not found") }
        guard record.state == .running else {
            throw .failedPrecondition("container \(id) is not running (\(record.state.rawValue))")
        }
        guard !command.isEmpty, !command[0].isEmpty else { throw .invalidArgument("cmd must not be empty") }
        let (_, agent) = try await pods.readyAgent(record.sandboxID)
        let execID = String(UInt64.random(in: 1...UInt64.max), radix: 16)
        var process = record.process ?? ProcessSpec(args: [])
        process.args = command
        let session = execs.open(execID, container: id)
        defer { execs.close(execID) }
        do {
            _ = try await agent.exec(
                container: id, execID: execID, process: process, stdio: .collected, timeout: agentCall)
        } catch {
            throw await agentFailure(error, "exec in container \(id)", pod: record.sandboxID)
        }
        if session.exitCode == nil {
            let finished = await withTaskGroup(of: Bool.self) { group -> Bool in
                group.addTask {
                    await self.waitForExec(execID)
                    return true
                }
                if timeout > .zero {
                    group.addTask {
                        try? await Task.sleep(for: timeout)  // cancelled when the exec finishes first
                        return false
                    }
                }
                let first = await group.next() ?? false
                group.cancelAll()
                if !first { self.execs.wake(execID) }
                return first
            }
            if let lost = session.lost {
                // Nothing to kill: the VM or its channel is gone (also without a timeout, the call ends).
                throw .unavailable("command \(command) in container \(id): \(lost)")
            }
            if !finished || session.exitCode == nil {
                do {
                    try await agent.signal(container: id, exec: execID, signal: SIGKILL, timeout: agentCall)
                } catch {
                    logger.warning(
                        "timed-out exec not killed",
                        metadata: ["id": "\(id)", "exec": "\(execID)", "error": "\(error)"])
                }
                throw .deadlineExceeded("command \(command) in container \(id) timed out after \(timeout)")
            }
        }
        return ExecResult(stdout: session.stdout, stderr: session.stderr, exitCode: session.exitCode ?? -1)
    }

    func waitForExec(_ execID: String) async {
        guard let session = execs.session(execID), session.exitCode == nil, session.waiter == nil else { return }
        await withCheckedContinuation { session.waiter = $0 }
    }
}
