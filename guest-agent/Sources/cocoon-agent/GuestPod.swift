import AgentAPI
import AgentService
import CAgentSys
import Glibc

/// The pod as a whole inside its VM: its settings (sysctls, pod-wide resources), network
/// interface, identity files and shared directory, and the guest's health report.
struct GuestPod: PodService {
    let boot: Cocoon_Agent_V4_BootReport

    func health() -> Cocoon_Agent_V4_HealthResponse {
        var h = Cocoon_Agent_V4_HealthResponse()
        h.apiVersion = agentAPIVersion
        h.agentVersion = agentVersion
        var release = [CChar](repeating: 0, count: 256)
        cocoon_kernel_release(&release, Int32(release.count))
        h.kernelRelease = String(
            decoding: release.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        h.uptimeNs = cocoon_boottime_ns()
        h.boot = boot
        if let meminfo = readSmallFile("/proc/meminfo") {
            for line in meminfo.split(separator: "\n") {
                let words = line.split(separator: " ")
                guard words.count >= 2, let kib = UInt64(words[1]) else { continue }
                if words[0] == "MemTotal:" { h.memTotalKib = kib }
                if words[0] == "MemAvailable:" { h.memAvailableKib = kib }
            }
        }
        return h
    }

    /// A clone's fresh identity, the pod's sysctls and network, its identity files and shared
    /// directory; the console says where the time went.
    func configure(_ r: Cocoon_Agent_V4_ConfigurePodRequest) throws(AgentFailure) {
        let t0 = cocoon_boottime_ns()
        if r.hasRestored { try RestoredGuest.apply(r.restored) }
        let t1 = cocoon_boottime_ns()
        try PodSettings.apply(sysctls: r.sysctls)
        if r.hasInterface {
            try GuestNetwork.configure(r.interface, templateMAC: r.hasRestored ? r.restored.templateMac : nil)
        }
        let t2 = cocoon_boottime_ns()
        try PodIdentityFiles.write(r)
        if !r.sharedFsTag.isEmpty { try SharedVolumes.mount(tag: r.sharedFsTag) }
        let t3 = cocoon_boottime_ns()
        log(
            "pod configured in \((t3 - t0) / 1_000_000) ms: identity \((t1 - t0) / 1_000_000), sysctls and "
                + "network \((t2 - t1) / 1_000_000), files and volumes \((t3 - t2) / 1_000_000)")
    }

    func updateResources(_ r: Cocoon_Agent_V4_UpdatePodResourcesRequest) throws(AgentFailure) {
        try PodSettings.apply(podResources: GuestContainers.resources(r.resources))
    }
}

extension GuestContainers: ContainerService {}
extension GuestPorts: PortService {}
