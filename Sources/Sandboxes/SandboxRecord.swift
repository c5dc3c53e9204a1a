import AgentClient
import Hypervisor
import PodNetwork

/// Everything Cocoon knows about one pod sandbox, persisted as JSON so it survives daemon restarts.
/// CRI-agnostic: the CRI layer translates to and from `runtime.v1` messages.
///
/// Its life, and the only function that changes `state` (`transition`):
///
///     creating --booted--> ready --stopped / vmExited--> notReady
///        |                                                  ^
///        +---------------stopped (recovery)-----------------+
///
/// A failed RunPodSandbox deletes its `creating` record (nothing is left behind); so does recovery
/// when it finds one left by a crash, falling back to `notReady` if the delete fails. `notReady` is
/// final: a stopped pod's VM never comes back (the kubelet creates a new sandbox).
public struct SandboxRecord: Codable, Sendable, Equatable {
    public enum State: String, Codable, Sendable {
        /// The VM is booting; a record left in this state by a crash is cleaned up on restart.
        case creating
        case ready
        case notReady
    }

    /// What happens to a sandbox.
    public enum Event: Sendable, Equatable {
        /// The guest agent answered: the pod is READY.
        case booted(bootMs: Double, guest: GuestInfo)
        /// Stopped on request (or abandoned by recovery); the first reason and time are kept.
        case stopped(reason: String, atNs: Int64)
        /// The VM ended by itself.
        case vmExited(atNs: Int64)
    }

    public var id: String
    public var metadata: PodMetadata
    public var labels: [String: String]
    public var annotations: [String: String]
    public var runtimeHandler: String
    public var createdAtNs: Int64
    public private(set) var state: State
    public var vcpus: Int
    public var memoryMiB: Int
    public var vm: VMHandle?
    /// The host uid (and gid) the VM's process runs as: `vm_uid_base` + a slot no other pod holds.
    public var vmUID: UInt32?
    /// RunPodSandbox call to agent answering, in milliseconds.
    public private(set) var bootMs: Double?
    public private(set) var guest: GuestInfo?
    public private(set) var stoppedAtNs: Int64?
    /// Why the sandbox is not ready, when Cocoon knows (VM exited, stopped by request).
    public private(set) var reason: String?
    /// The CRI PodSandboxConfig as JSON, kept for the container calls that need it later.
    public var configJSON: String?
    /// Image disks hot-plugged into the VM: serial -> SCSI slot.
    public var disks: [String: Int]?
    /// The pod's network (namespace, CNI result, NIC), from before its VM boots until removal.
    public var network: PodNetworkState?
    /// How its VM started: booted, cloned from its handler's template, or taken from the warm pool.
    public var start: VMStart?
    /// Why a pod of a template handler booted cold (no template yet, a size of its own, ...).
    public var coldReason: String?
    /// Where RunPodSandbox spent its time, in milliseconds (`vm`: boot or restore to a ready agent,
    /// `network`: CNI and wiring, `configure`: ConfigurePod; side by side for a clone).
    public var startSteps: [String: Double]?
    /// The pod's cgroup (CRI `cgroup_parent`, as a hierarchy path) its VM's cgroup sits under.
    public var cgroupParent: String?
    /// The pod uses the node's network (a hostNetwork pod of a native handler): no CNI, no namespace.
    public var hostNetwork: Bool?
    /// The pod's containers share the node's PID namespace, and the pod its IPC namespace (native).
    public var hostPID: Bool?
    public var hostIPC: Bool?

    public init(
        id: String, metadata: PodMetadata, labels: [String: String], annotations: [String: String],
        runtimeHandler: String,
        createdAtNs: Int64, vcpus: Int, memoryMiB: Int, vm: VMHandle? = nil, configJSON: String? = nil
    ) {
        self.id = id
        self.metadata = metadata
        self.labels = labels
        self.annotations = annotations
        self.runtimeHandler = runtimeHandler
        self.createdAtNs = createdAtNs
        self.state = .creating
        self.vcpus = vcpus
        self.memoryMiB = memoryMiB
        self.vm = vm
        self.configJSON = configJSON
    }

    /// Applies `event` and returns true, or returns false and changes nothing when the event does not
    /// apply in this state (a VM exit of a pod already stopped, a boot of a ready pod).
    @discardableResult
    public mutating func transition(_ event: Event) -> Bool {
        switch (state, event) {
        case (.creating, .booted(let bootMs, let guest)):
            state = .ready
            self.bootMs = bootMs
            self.guest = guest
        case (.creating, .stopped(let reason, let at)), (.ready, .stopped(let reason, let at)):
            state = .notReady
            stoppedAtNs = at
            self.reason = reason
        case (.notReady, .stopped(let reason, let at)) where stoppedAtNs == nil:
            stoppedAtNs = at
            self.reason = self.reason ?? reason
        case (.ready, .vmExited(let at)):
            state = .notReady
            stoppedAtNs = at
            reason = "VM exited unexpectedly"
        default:
            return false
        }
        return true
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
    public init(_ h: GuestHealth) {
        agentVersion = h.agentVersion
        apiVersion = h.apiVersion
        kernelRelease = h.kernelRelease
        transport = h.transport
        agentStartedMs = Double(h.agentStartedNs) / 1e6
        channelOpenMs = Double(h.channelOpenNs) / 1e6
        memTotalKiB = h.memTotalKiB
    }

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

/// How a pod's VM started.
public enum VMStart: String, Sendable, Codable, Equatable {
    /// A boot of its own kernel.
    case cold
    /// A clone of its handler's template, restored for this pod.
    case template
    /// A clone restored ahead of time and waiting in its handler's pool.
    case pool
}
