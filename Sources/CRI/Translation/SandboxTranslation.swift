import CRIAPI
import Containers
import Errors
import Foundation
import Hypervisor
import Models
import PodNetwork
import Sandboxes

/// Converts sandbox records to CRI messages and CRI filters to sandbox filters.
public enum SandboxTranslation {
    static func state(_ record: SandboxRecord) -> Runtime_V1_PodSandboxState {
        record.state == .ready ? .sandboxReady : .sandboxNotready
    }

    static func metadata(_ m: PodMetadata) -> Runtime_V1_PodSandboxMetadata {
        var out = Runtime_V1_PodSandboxMetadata()
        out.name = m.name
        out.uid = m.uid
        out.namespace = m.namespace
        out.attempt = m.attempt
        return out
    }

    public static func pod(_ record: SandboxRecord) -> Runtime_V1_PodSandbox {
        var pod = Runtime_V1_PodSandbox()
        pod.id = record.id
        pod.metadata = metadata(record.metadata)
        pod.state = state(record)
        pod.createdAt = record.createdAtNs
        pod.labels = record.labels
        pod.annotations = record.annotations
        pod.runtimeHandler = record.runtimeHandler
        return pod
    }

    public static func status(_ record: SandboxRecord) -> Runtime_V1_PodSandboxStatus {
        var status = Runtime_V1_PodSandboxStatus()
        status.id = record.id
        status.metadata = metadata(record.metadata)
        status.state = state(record)
        status.createdAt = record.createdAtNs
        status.network = Runtime_V1_PodSandboxNetworkStatus()
        if let ips = record.network?.ips, let first = ips.first {
            status.network.ip = first
            status.network.additionalIps = ips.dropFirst().map { ip in .with { $0.ip = ip } }
        }
        status.labels = record.labels
        status.annotations = record.annotations
        status.runtimeHandler = record.runtimeHandler
        if record.hostNetwork == true { status.linux.namespaces.options.network = .node }
        if record.hostPID == true { status.linux.namespaces.options.pid = .node }
        if record.hostIPC == true { status.linux.namespaces.options.ipc = .node }
        return status
    }

    public static func filter(_ request: Runtime_V1_ListPodSandboxRequest) -> SandboxFilter {
        guard request.hasFilter else { return SandboxFilter() }
        let f = request.filter
        return SandboxFilter(
            id: f.id.isEmpty ? nil : f.id,
            ready: f.hasState ? f.state.state == .sandboxReady : nil,
            labels: f.labelSelector)
    }

    /// The verbose `info` JSON: the VM behind the sandbox.
    public static func verboseInfo(_ record: SandboxRecord) throws(CocoonError) -> String {
        struct VMInfo: Encodable {
            enum CodingKeys: String, CodingKey {
                case hypervisor, pid, accel, vcpus, guest, reason
                case vmName = "vm_name", memoryMiB = "memory_mib", consoleLog = "console_log"
                case agentEndpoint = "agent_endpoint", bootMs = "boot_ms", start
                case coldReason = "cold_reason", startSteps = "start_steps_ms"
                case uid = "vmm_uid", seccomp = "vmm_seccomp", cgroup = "vmm_cgroup"
            }
            var hypervisor: Backend?
            var vmName: String?
            var pid: Int32?
            var accel: Accel?
            var vcpus: Int
            var memoryMiB: Int
            var consoleLog: String?
            var agentEndpoint: String?
            var bootMs: Double?
            /// cold, template or pool, and why a template handler's pod booted cold.
            var start: VMStart?
            var coldReason: String?
            var startSteps: [String: Double]?
            var guest: GuestInfo?
            var reason: String?
            /// The host user, seccomp filter and cgroup of the VM's process.
            var uid: UInt32?
            var seccomp: String?
            var cgroup: String?
        }
        struct Info: Encodable {
            enum CodingKeys: String, CodingKey {
                case sandboxID = "sandbox_id", runtimeHandler = "runtime_handler", state, vm, network
            }
            var sandboxID: String
            var runtimeHandler: String
            var state: String
            var vm: VMInfo
            var network: PodNetworkState?
        }
        let vm = record.vm
        var endpoint: String?
        switch vm?.agent {
        case .serial(let path)?: endpoint = "virtio-serial:" + path
        case .vsock(let cid, let port)?: endpoint = "vsock:\(cid):\(port)"
        case nil: endpoint = nil
        }
        let info = Info(
            sandboxID: record.id, runtimeHandler: record.runtimeHandler, state: record.state.rawValue,
            vm: VMInfo(
                hypervisor: vm?.backend, vmName: vm?.name, pid: vm?.pid, accel: vm?.accel, vcpus: record.vcpus,
                memoryMiB: record.memoryMiB, consoleLog: vm?.consoleLog, agentEndpoint: endpoint,
                bootMs: record.bootMs.map { ($0 * 10).rounded() / 10 }, start: record.start,
                coldReason: record.coldReason, startSteps: record.startSteps?.mapValues { ($0 * 10).rounded() / 10 },
                guest: record.guest, reason: record.reason,
                uid: vm?.uid, seccomp: vm?.seccomp, cgroup: vm?.cgroup), network: record.network)
        return try VerboseJSON.encode(info)
    }
}
