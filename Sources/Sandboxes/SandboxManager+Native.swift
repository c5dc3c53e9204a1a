import Config
import Errors
import Foundation
import Hypervisor
import PodNetwork

/// Pods of a native handler: no VM; the pod's agent runs on the host in the pod's namespaces.
extension SandboxManager {
    /// The native strategy: the pod's network (CNI into a namespace of its own; none for a
    /// hostNetwork pod), its shared directory, and its agent on the host until it answers.
    func startNative(_ plan: RunPlan, _ request: RunRequest, tokenFile: String, record: inout SandboxRecord)
        async throws(CocoonError) -> StartedVM
    {
        let id = record.id
        _ = try AgentTokenFile.create(at: tokenFile)
        var attachment: PodNetworkAttachment?
        if !request.hostNetwork {
            let networking = ContinuousClock.now
            let attached = try await setUpNetwork(request, id: id, tap: .none)
            record.startSteps?["network"] = (ContinuousClock.now - networking).milliseconds
            record.network = attached.state
            records[id] = record
            try store.save(record)
            attachment = attached
        }
        var spec = VMSpec(
            id: id, kernel: "", initrd: "", agentImage: "", vcpus: plan.vcpus, memoryMiB: plan.memoryMiB,
            accel: .auto, stateDir: store.directory(for: id), runDir: config.vmRunDir(id), agentTokenFile: tokenFile)
        spec.netns = attachment.map { NetworkNamespace.path(name: $0.state.namespace) }
        spec.hostPID = request.hostPID
        spec.hostIPC = request.hostIPC
        try prepareShare(id, handler: plan.handler, hypervisor: plan.hypervisor, into: &spec)
        spec.cgroupParent = plan.cgroupParent
        let starting = ContinuousClock.now
        let (vm, health) = try await bootUntilAgent(spec, hypervisor: plan.hypervisor, record: &record)
        record.startSteps?["agent"] = (ContinuousClock.now - starting).milliseconds
        record.start = .cold
        return StartedVM(vm: vm, health: health, attachment: attachment)
    }

    /// A native pod's agent runs on the node and writes its containers' CRI logs itself.
    public func agentWritesLogs(_ podID: String) async -> Bool {
        records[podID]?.vm?.backend == .native
    }

    /// The node's namespaces a pod asks for (network, PID, IPC): native handlers only; a VM handler
    /// names the native handlers that would run the pod.
    static func checkHostNamespaces(
        _ request: RunRequest, _ handlerName: String, _ handler: RuntimeHandler, handlers: [String: RuntimeHandler]
    ) throws(CocoonError) {
        for (field, asked) in [("network", request.hostNetwork), ("pid", request.hostPID), ("ipc", request.hostIPC)]
        where asked && handler.backend.isVM {
            throw .invalidArgument(hostNamespaceRefusal(field, handlerName, natives: handlers))
        }
    }

    /// Why a VM handler refuses a pod in one of the node's namespaces, and which handlers would run it.
    public static func hostNamespaceRefusal(
        _ field: String, _ handlerName: String, natives handlers: [String: RuntimeHandler]
    ) -> String {
        let natives = handlers.filter { $0.value.backend == .native }.keys.sorted()
        let way =
            natives.isEmpty
            ? "configure a handler with backend = \"native\" for such pods"
            : "run such pods with a native handler (runtimeClassName for: \(natives.joined(separator: ", ")))"
        return "config.linux.security_context.namespace_options.\(field): NODE is not supported by runtime handler "
            + "\"\(handlerName)\": a pod VM cannot share the node's namespaces, and an untrusted workload must "
            + "not get them; \(way)"
    }
}
