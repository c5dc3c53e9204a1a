import CRIAPI
import Containers
import GRPCCore
import Sandboxes

extension RuntimeService {
    /// Container created/started/stopped/deleted events as they happen, each with its pod's status
    /// and the statuses of the pod's containers, for the kubelet's evented PLEG. Runs until the client
    /// goes away or the daemon stops; a client that falls behind loses its oldest events.
    public func getContainerEvents(
        request: Runtime_V1_GetEventsRequest, response: RPCWriter<Runtime_V1_ContainerEventResponse>,
        context: ServerContext
    ) async throws {
        for await event in containers.lifecycleEvents() {
            var message = Runtime_V1_ContainerEventResponse()
            message.containerID = event.containerID
            message.createdAt = event.atNs
            switch event.kind {
            case .created: message.containerEventType = .containerCreatedEvent
            case .started: message.containerEventType = .containerStartedEvent
            case .stopped: message.containerEventType = .containerStoppedEvent
            case .deleted: message.containerEventType = .containerDeletedEvent
            }
            // try?: the pod is gone: the event carries no pod status
            if let pod = try? await sandboxes.status(event.sandboxID) {
                message.podSandboxStatus = SandboxTranslation.status(pod)
            }
            var statuses = try await containers.list(inSandbox: event.sandboxID).map(ContainerTranslation.status)
            if event.kind == .deleted { statuses.append(ContainerTranslation.status(event.record)) }
            message.containersStatuses = statuses
            try await response.write(message)
        }
    }
}
