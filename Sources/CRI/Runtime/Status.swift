import CRIAPI
import Config
import Foundation
import GRPCCore
import Hypervisor
import Models
import Volumes

extension RuntimeService {
    /// RuntimeReady is true when the hypervisors the handlers need can run; NetworkReady once a CNI
    /// network configuration loads (else false with the reason the kubelet knows from containerd).
    public func status(request: Runtime_V1_StatusRequest, context: ServerContext) async throws
        -> Runtime_V1_StatusResponse
    {
        var runtime = Runtime_V1_RuntimeCondition()
        runtime.type = "RuntimeReady"
        let missing = missingParts()
        runtime.status = missing.isEmpty
        if !missing.isEmpty {
            runtime.reason = "HypervisorNotReady"
            runtime.message = missing.joined(separator: "; ")
        }
        var network = Runtime_V1_RuntimeCondition()
        network.type = "NetworkReady"
        let readiness = await sandboxes.networkReadiness()
        network.status = readiness.ready
        if !readiness.ready {
            network.reason = "NetworkPluginNotReady"
            network.message = "cocoon: network plugin returns error: \(readiness.message)"
        }

        var response = Runtime_V1_StatusResponse()
        response.status.conditions = [runtime, network]
        var names = [""]
        names += config.handlers.keys.sorted()
        response.runtimeHandlers = names.map { name in
            var h = Runtime_V1_RuntimeHandler()
            h.name = name
            h.features = Runtime_V1_RuntimeHandlerFeatures()
            // Shared volumes (virtio-fs and native pods) are bound on the host with mount_setattr
            // (recursive read-only), which the host kernel must have; copied ones are read-only
            // trees in the guest (its kernel has it), submounts included.
            let handler = name.isEmpty ? config.handlers[config.defaultHandler] : config.handlers[name]
            h.features.recursiveReadOnlyMounts =
                handler.map { $0.backend.isVM && $0.sharedFS == .none } == true || PodShare.recursiveReadOnlyAvailable
            return h
        }
        if request.verbose {
            // KVM or TCG for each guest, and why (decided by a real boot; see Accelerator).
            let decisions = await Accelerator.shared.known().map {
                AccelInfo(
                    kernel: $0.kernel, qemu: $0.qemu, accel: $0.accel, reason: $0.reason, decidedAtNs: $0.decidedAtNs,
                    kvmFailures: $0.kvmFailures, lastKVMFailure: $0.lastFailure)
            }
            response.info["accelerator"] = try VerboseJSON.encode(decisions)
            response.info["config"] = try VerboseJSON.encode(ConfigInfo(config))
            // Templates (start = "template") and their warm pools.
            response.info["templates"] = try VerboseJSON.encode(await sandboxes.templateStatus())
            if config.handlers.values.contains(where: { $0.backend == .libvirt }) {
                response.info["libvirt"] = try VerboseJSON.encode(LibvirtInfo(LibvirtdKVMView.current(), decisions))
            }
            response.info["network"] = try VerboseJSON.encode(
                NetworkInfo(
                    ready: readiness.ready, message: readiness.message, network: readiness.network,
                    confDir: config.cni.confDir, binDirs: config.cni.binDirs, podCIDR: sandboxes.podCIDR()))
        }
        return response
    }

    private func missingParts() -> [String] {
        var missing: [String] = []
        for (name, handler) in config.handlers.sorted(by: { $0.key < $1.key }) {
            if handler.backend == .native {
                let agent = NativeSandboxer.defaultAgentBinary
                if !FileManager.default.isExecutableFile(atPath: agent) {
                    missing.append("handler \(name): the native pod agent \(agent) not found")
                }
                continue
            }
            if handler.backend == .qemu, !FileManager.default.isExecutableFile(atPath: qemuBinary) {
                missing.append("handler \(name): \(qemuBinary) not found")
            }
            for path in [handler.kernel, handler.initrd, handler.agentImage]
            where !FileManager.default.fileExists(atPath: path) {
                missing.append("handler \(name): \(path) not found (run images/build-guest)")
            }
        }
        return missing
    }
}

/// One accelerator decision as `Status` (verbose) shows it.
struct AccelInfo: Encodable {
    var kernel: String
    var qemu: String
    var accel: Accel
    var reason: String
    var decidedAtNs: Int64
    /// KVM pod boots that failed since the last good one (`Accelerator.failuresToFlip` flip it).
    var kvmFailures: Int?
    var lastKVMFailure: String?
    enum CodingKeys: String, CodingKey {
        case kernel, qemu, accel, reason
        case decidedAtNs = "decided_at_ns"
        case kvmFailures = "kvm_failures"
        case lastKVMFailure = "last_kvm_failure"
    }
}

/// What libvirtd sees of KVM beside the real-boot decision, as `Status` (verbose) shows it: a warning
/// when the two disagree (libvirtd then probes QEMU again on every domain start, or runs TCG needlessly).
struct LibvirtInfo: Encodable {
    var libvirtdPid: Int32?
    var kvmUsableForLibvirtd: Bool
    var warning: String?
    enum CodingKeys: String, CodingKey {
        case warning
        case libvirtdPid = "libvirtd_pid", kvmUsableForLibvirtd = "kvm_usable_for_libvirtd"
    }

    init(_ view: LibvirtdKVMView, _ decisions: [AccelInfo]) {
        libvirtdPid = view.libvirtdPid
        kvmUsableForLibvirtd = view.kvmUsable
        warning = view.disagreement(with: decisions.map(\.accel))
    }
}

/// Pod networking as `Status` (verbose) shows it.
struct NetworkInfo: Encodable {
    var ready: Bool
    var message: String
    var network: String?
    var confDir: String
    var binDirs: [String]
    var podCIDR: String
    enum CodingKeys: String, CodingKey {
        case ready, message, network
        case confDir = "conf_dir", binDirs = "bin_dirs", podCIDR = "pod_cidr"
    }
}

/// The daemon's configuration as `Status` (verbose) shows it.
struct ConfigInfo: Encodable {
    struct Handler: Encodable {
        var name: String
        var backend: Backend
        var kernel: String
        var initrd: String
        var agentImage: String
        var vcpus: Int
        var memoryMiB: Int
        var accel: Accel
        var start: String
        var sharedFS: String
        var poolSize: Int
        var trustedGuests: Bool
        enum CodingKeys: String, CodingKey {
            case name, backend, kernel, initrd, vcpus, accel, start
            case agentImage = "agent_image", memoryMiB = "memory_mib", sharedFS = "shared_fs", poolSize = "pool_size"
            case trustedGuests = "trusted_guests"
        }
    }
    var stateRoot: String
    var runDir: String
    var socket: String
    var defaultHandler: String
    var handlers: [Handler]
    enum CodingKeys: String, CodingKey {
        case socket, handlers
        case stateRoot = "state_root", runDir = "run_dir", defaultHandler = "default_handler"
    }

    init(_ c: CocoonConfig) {
        stateRoot = c.stateRoot
        runDir = c.runDir
        socket = c.socket
        defaultHandler = c.defaultHandler
        handlers = c.handlers.sorted { $0.key < $1.key }.map { name, h in
            Handler(
                name: name, backend: h.backend, kernel: h.kernel, initrd: h.initrd, agentImage: h.agentImage,
                vcpus: h.vcpus, memoryMiB: h.memoryMiB, accel: h.accel, start: h.start.rawValue,
                sharedFS: h.sharedFS.rawValue, poolSize: h.poolSize, trustedGuests: h.trustedGuests)
        }
    }
}
