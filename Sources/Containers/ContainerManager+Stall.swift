import AgentClient
import Errors

extension ContainerManager {
    /// An agent call's failure as the CRI error; a call past its deadline also says what the pod's
    /// VM was doing then (`PodAgents.stallReport`), so that a guest that stopped answering can be
    /// told from one that is only slow.
    func agentFailure(_ error: AgentClientError, _ what: String, pod: String) async -> CocoonError {
        let failure = CocoonError.from(error, what)
        guard case .deadlineExceeded = error, let report = await pods.stallReport(pod) else { return failure }
        return CocoonError(failure.code, failure.message + "; the pod's VM: " + report, cause: error)
    }
}
