import Hypervisor

/// Everything Cocoon knows about one pod sandbox, persisted as JSON so it survives daemon restarts.
/// CRI-agnostic: the CRI layer translates to and from `runtime.v1` messages.
public struct SandboxRecord: Codable, Sendable, Equatable {
    public enum State: String, Codable, Sendable {
        /// The VM is booting; a record left in this state by a crash is cleaned up on restart.
        case creating
        case ready
        case notReady
    }

    public var id: String
    public var metadata: PodMetadata
    public var labels: [String: String]
    public var annotations: [String: String]
    public var runtimeHandler: String
    public var createdAtNs: Int64
    public var state: State
    public var vcpus: Int
    public var memoryMiB: Int
    public var vm: VMHandle?
    /// RunPodSandbox call to agent answering, in milliseconds.
    public var bootMs: Double?
    public var guest: GuestInfo?
    public var stoppedAtNs: Int64?
    /// Why the sandbox is not ready, when Cocoon knows (VM exited, stopped by request).
    public var reason: String?
    /// The CRI PodSandboxConfig as JSON, kept for the container calls that need it later.
    public var configJSON: String?
    /// Image disks hot-plugged into the VM: serial -> SCSI slot.
    public var disks: [String: Int]?

    public init(
        id: String, metadata: PodMetadata, labels: [String: String], annotations: [String: String], runtimeHandler: String,
        createdAtNs: Int64, state: State, vcpus: Int, memoryMiB: Int, vm: VMHandle? = nil, configJSON: String? = nil
    ) {
        self.id = id
        self.metadata = metadata
        self.labels = labels
        self.annotations = annotations
        self.runtimeHandler = runtimeHandler
        self.createdAtNs = createdAtNs
        self.state = state
        self.vcpus = vcpus
        self.memoryMiB = memoryMiB
        self.vm = vm
        self.configJSON = configJSON
    }

    /// The name containerd reserves per pod: name_namespace_uid_attempt.
    public var reservedName: String { metadata.reservedName }
}

public struct PodMetadata: Codable, Sendable, Equatable, Hashable {
    public var name: String
    public var uid: String
    public var namespace: String
    public var attempt: UInt32

    public init(name: String, uid: String, namespace: String, attempt: UInt32) {
        self.name = name
        self.uid = uid
        self.namespace = namespace
        self.attempt = attempt
    }

    public var reservedName: String { [name, namespace, uid, String(attempt)].joined(separator: "_") }
}

/// What the guest agent reported about itself when the sandbox became ready.
public struct GuestInfo: Codable, Sendable, Equatable {
    enum CodingKeys: String, CodingKey {
        case agentVersion = "agent_version", apiVersion = "api_version", kernelRelease = "kernel_release", transport
        case agentStartedMs = "agent_started_ms", channelOpenMs = "channel_open_ms", memTotalKiB = "mem_total_kib"
    }
    public var agentVersion: String
    public var apiVersion: UInt32
    public var kernelRelease: String
    public var transport: String
    /// Guest-clock milliseconds since the guest kernel started.
    public var agentStartedMs: Double
    public var channelOpenMs: Double
    public var memTotalKiB: UInt64
}
