import AgentClient
import Config
import Errors
import Foundation
import Hypervisor
import Spawn
import Volumes

/// A pod's shared directory (its containers' volumes, served to the VM by virtio-fs): made before
/// the VM boots, volumes bound and unbound with containers, all of it gone when the pod stops.
extension SandboxManager {
    /// Where pod `id`'s shared directory lives (in the run directory: root's alone, 0700).
    func podShare(_ id: String) -> PodShare { PodShare(root: config.runDir + "/shared/" + String(id.prefix(16))) }

    /// Makes the pod's shared directory and its mount namespace when its handler wants one and its
    /// hypervisor can share one: the directory to export and the namespace go into `spec`.
    func prepareShare(_ id: String, handler: RuntimeHandler, hypervisor: any Hypervisor, into spec: inout VMSpec)
        throws(CocoonError)
    {
        guard handler.sharedFS == .virtioFS, hypervisor.sharesDirectories else { return }
        let share = podShare(id)
        try share.create()
        spec.sharedDir = share.exportDir
        spec.sharedMountNamespace = share.mountNamespace
    }

    /// Drops the pod's mount namespace with every volume bound in it, removes its shared directory
    /// and any virtiofsd left serving it (a crash mid-boot). Logged when something stays.
    func releaseShare(_ id: String) {
        let share = podShare(id)
        guard
            FileManager.default.fileExists(atPath: share.root)
                || FileManager.default.fileExists(atPath: share.namespacePin)
        else { return }
        for pid in HostProcess.pids(withArgument: Virtiofsd.marker(sharedDir: share.exportDir)) { kill(pid, SIGKILL) }
        if !share.destroy() {
            logger.warning("pod shared directory left behind", metadata: ["id": "\(id)", "dir": "\(share.root)"])
        }
    }

    public func shareVolumes(_ podID: String, container: String, _ volumes: [VolumeRequest]) async throws(CocoonError)
        -> [SharedMount]?
    {
        await locks.acquire(podID)
        defer { locks.release(podID) }
        guard let record = records[podID], record.state == .ready, let vm = record.vm else {
            throw .failedPrecondition("pod sandbox \(podID) is not ready")
        }
        guard vm.sharedDir != nil else { return nil }
        let share = podShare(podID)
        var shared: [SharedMount] = []
        // container_path was checked at the CRI edge (ContainerVolumes).
        for (i, volume) in volumes.enumerated() {
            do {
                shared.append(
                    try share.bind(
                        volume, user: container, field: "mounts[\(i)].host_path",
                        forbidden: [config.stateRoot, config.runDir]))
            } catch {
                share.release(user: container)
                throw error
            }
        }
        return shared
    }

    /// Releases a container's volumes (under the pod's lock: another container may be taking the
    /// same bind).
    public func unshareVolumes(_ podID: String, container: String) async {
        await locks.acquire(podID)
        defer { locks.release(podID) }
        podShare(podID).release(user: container)
    }
}
