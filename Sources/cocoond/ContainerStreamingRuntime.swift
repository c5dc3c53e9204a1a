import Containers
import Errors
import Models
import Streaming

/// The container manager as the streaming server's runtime: the one place that knows both, as
/// containerd's CRI service implements `streaming.Runtime`.
struct ContainerStreamingRuntime: StreamingRuntime {
    let containers: ContainerManager

    func openExec(_ request: ExecRequest) async throws(CocoonError) -> any StreamedProcess {
        try await containers.openExec(request)
    }

    func attach(_ containerID: String, stdin: Bool) async throws(CocoonError) -> any StreamedProcess {
        try await containers.attach(containerID, stdin: stdin)
    }

    func dial(pod: String, port: UInt16) async throws(CocoonError) -> any StreamedPort {
        try await containers.dial(pod: pod, port: port)
    }
}

extension ProcessStream: StreamedProcess {}
extension PortConnection: StreamedPort {}
