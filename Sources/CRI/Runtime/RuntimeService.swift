import CRIAPI
import Config
import Containers
import GRPCCore
import Hypervisor
import Images
import Sandboxes
import Streaming

/// The CRI v1 RuntimeService. Each call lives in its own file (`RunPodSandbox.swift`, …); calls not
/// built yet are in `NotImplemented.swift` and answer UNIMPLEMENTED.
public struct RuntimeService: Runtime_V1_RuntimeService.SimpleServiceProtocol {
    public static let runtimeName = "cocoon"
    public static let runtimeVersion = "0.1.0"
    public static let runtimeAPIVersion = "v1"

    let config: CocoonConfig
    /// The pod sandboxes, through the sandbox-controller seam only.
    let sandboxes: any SandboxController & SandboxNode
    let containers: ContainerManager
    let images: ImageManager
    let qemuBinary: String
    /// Serves the URLs of Exec, Attach and PortForward; nil when the daemon runs without one.
    let streaming: StreamingServer?

    public init(
        config: CocoonConfig, sandboxes: any SandboxController & SandboxNode, containers: ContainerManager,
        images: ImageManager,
        streaming: StreamingServer? = nil, qemuBinary: String = QEMUHypervisor.defaultBinary
    ) {
        self.streaming = streaming
        self.config = config
        self.sandboxes = sandboxes
        self.containers = containers
        self.images = images
        self.qemuBinary = qemuBinary
    }
}
