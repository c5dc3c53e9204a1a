import AgentAPI
import AgentService
import ContainerCore
import Glibc
import Models

/// Which PID namespace each container is born in: its own, the pod's (held by the pod's pause,
/// started on first use), the node's (a native pod's agent is in it), or a running container's.
extension GuestContainers {
    /// Refuses, at create, a namespace this pod cannot give: the node's in a VM, or a target that
    /// is not one of the pod's containers.
    func checkPIDNamespace(_ r: Cocoon_Agent_V4_CreateContainerRequest) throws(AgentFailure) {
        switch r.pidNamespace {
        case .pidNode where HostMode.current == nil:
            throw .invalid("pid_namespace NODE: a pod VM has no access to the node's PID namespace")
        case .pidTarget:
            try GuestContainers.validateID(r.pidTargetID, field: "pid_target_id")
            guard containers[r.pidTargetID] != nil else {
                throw .notFound("pid_target_id: container \(r.pidTargetID) not found in this pod")
            }
        case .UNRECOGNIZED(let value):
            throw .invalid("pid_namespace \(value) is not known to this agent")
        default: break
        }
    }

    /// At start: (a new PID namespace?, the process whose namespace it joins).
    mutating func pidNamespace(for container: Container) throws(AgentFailure) -> (Bool, Int32?) {
        let hostPID = HostMode.current?.hostPID ?? false
        switch container.pidNamespace {
        case .pidOwn: return (true, nil)
        case .pidNode: return (false, nil)
        case .pidPod: return hostPID ? (false, nil) : (false, try podInit())
        case .pidTarget:
            guard let target = containers[container.pidTarget], target.state == .running, target.pid > 0 else {
                throw .precondition(
                    "pid_target_id: container \(container.pidTarget) is not running: its PID namespace cannot be joined"
                )
            }
            return (false, target.pid)
        case .UNRECOGNIZED(let value):
            throw .invalid("pid_namespace \(value) is not known to this agent")
        }
    }

    /// The pod's pause, started now when it is not running.
    private mutating func podInit() throws(AgentFailure) -> Int32 {
        if pause > 0 { return pause }
        guard let binary = PodPIDNamespace.pauseBinary() else {
            throw .precondition(
                "\(PodPIDNamespace.pauseProgram) is missing beside the agent: the pod's containers cannot share "
                    + "a PID namespace (images/build-guest and swift build put it there)")
        }
        do {
            pause = try PodPIDNamespace.start(pause: binary)
        } catch {
            throw .internal("the pod's PID namespace: \(error)")
        }
        log("pod PID namespace held by \(binary) (pid \(pause))")
        return pause
    }

    /// Ends the pod's pause before the agent itself ends: its orphan would be adopted by the node's
    /// init, which may move it out of the pod's cgroup before cocoond ends what that cgroup holds.
    /// The kernel ends the pause only once every process of its namespace is reaped, and the
    /// containers' processes are this agent's children: they are reaped here meanwhile (5 s at most).
    mutating func endPause() {
        guard pause > 0 else { return }
        kill(pause, SIGKILL)
        var status: Int32 = 0
        for _ in 0..<500 {
            let pid = waitpid(-1, &status, WNOHANG)
            if pid == pause || (pid < 0 && errno == ECHILD) { break }
            if pid == 0 { usleep(10_000) }
        }
        pause = 0
    }

    /// The pause ended (killed, or signalled from inside the pod): the kernel ended every process
    /// of its namespace with it; the next POD-mode container gets a new one.
    mutating func pauseEnded(_ status: Int32) {
        log("the pod's pause (pid \(pause)) ended with status \(WaitStatus.exitCode(status))")
        pause = 0
    }
}
