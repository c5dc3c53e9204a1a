import AgentClient
import Errors
import Foundation
import Persistence
import PodNetwork

/// A pod's network across its life: set up before its VM boots, given to the guest before the pod
/// is READY, torn down (CNI DEL) at stop, its namespace removed with the pod.
extension SandboxManager {
    func setUpNetwork(_ request: RunRequest, id: String, tap: TapPlacement) async throws(CocoonError)
        -> PodNetworkAttachment
    {
        let ask = PodNetworkRequest(
            podID: id, name: request.metadata.name, namespace: request.metadata.namespace, uid: request.metadata.uid,
            portMappings: request.portMappings, dns: request.dns, bandwidth: request.bandwidth)
        do {
            return try await network.setUp(ask, tap: tap)
        } catch {
            throw CocoonError.from(error)
        }
    }

    /// A host tap the hypervisor opened by name goes into the pod's namespace, wired to its interface.
    func adoptHostTap(_ state: PodNetworkState) async throws(CocoonError) {
        do {
            try await network.adoptHostTap(state)
        } catch {
            throw CocoonError.from(error)
        }
    }

    /// The host tap name of a pod whose hypervisor opens taps by name: `cc` and 12 id characters.
    static func hostTapName(_ id: String) -> String { "cc" + String(id.prefix(12)) }

    /// CNI DEL once per pod (kept as done in its record); a failure is returned so that the
    /// kubelet's next StopPodSandbox tries again.
    func tearDownNetwork(_ record: inout SandboxRecord) async throws(CocoonError) {
        guard var state = record.network, !state.deleted else { return }
        do {
            try await network.tearDown(podID: record.id, state)
        } catch {
            throw CocoonError.from(error)
        }
        state.deleted = true
        record.network = state
        records[record.id] = record
        try store.save(record)
    }

    /// What the guest sets up before the pod is READY: sysctls, the NIC, the identity files.
    func podConfiguration(_ request: RunRequest, network state: PodNetworkState?) -> PodConfiguration {
        let hostname = request.hostname.isEmpty ? request.metadata.name : request.hostname
        var configuration = PodConfiguration(
            sysctls: request.sysctls, hostname: hostname + "\n",
            hosts: PodIdentity.hosts(hostname: hostname, ips: state?.ips ?? []),
            resolvConf: PodIdentity.resolvConf(pod: request.dns, result: state?.resultDNS))
        if let state {
            configuration.interface = .init(
                mac: state.mac, mtu: state.mtu, addresses: state.addresses,
                routes: state.routes.map { (destination: $0.destination, gateway: $0.gateway) })
        }
        return configuration
    }
}

extension CocoonError {
    /// A pod network failure: no configuration is a node not ready (FAILED_PRECONDITION), a plugin's
    /// refusal carries its message.
    static func from(_ error: CNIError) -> CocoonError {
        switch error {
        case .noConfig(let m), .config(let m): .failedPrecondition(m, cause: error)
        case .plugin(let m), .wiring(let m): .internalError("pod network: \(m)", cause: error)
        }
    }
}

extension SandboxManager {
    /// The network of a pod left booting by a crash: CNI DEL (with what the cache kept) and its
    /// namespace, whether or not its state was saved before the crash.
    func recoverNetwork(of record: SandboxRecord) async {
        let state =
            record.network
            ?? PodNetworkState(
                namespace: CNIPodNetwork.namespaceName(podID: record.id), network: "", ifName: CNIPodNetwork.ifName,
                mac: "", mtu: 0, addresses: [], routes: [])
        await releaseNetwork(podID: record.id, state, what: "a sandbox left booting")
    }

    /// CNI DEL and the namespace's removal where no caller can be failed (a rollback, recovery):
    /// a DEL that fails is logged, and the namespace goes anyway.
    func releaseNetwork(podID: String, _ state: PodNetworkState, what: String) async {
        do throws(CNIError) {
            try await network.tearDown(podID: podID, state)
        } catch {
            logger.error("CNI DEL of \(what) failed", metadata: ["id": "\(podID)", "error": "\(error)"])
        }
        await network.removeNamespace(state)
    }

    /// A READY pod found again after a restart: CNI CHECK says whether its network is still as ADD
    /// left it (logged; the pod keeps running either way, as containerd does).
    func checkNetwork(of record: SandboxRecord) async {
        guard record.state == .ready, let state = record.network, !state.deleted else { return }
        do throws(CNIError) {
            try await network.check(podID: record.id, state)
        } catch {
            logger.warning(
                "CNI CHECK of a recovered pod failed", metadata: ["id": "\(record.id)", "error": "\(error)"])
        }
    }
}

extension SandboxManager {
    /// Whether pods can get a network now (CRI `Status` NetworkReady).
    public func networkReadiness() async -> NetworkReadiness { await network.readiness() }

    /// The node's pod CIDR from the kubelet (`UpdateRuntimeConfig`), kept under the state root. The
    /// CNI configuration in use decides pod addresses; this is recorded and shown, as containerd
    /// does without a `conf_template`.
    public func setPodCIDR(_ cidr: String) throws(CocoonError) {
        do {
            try AtomicFile.write(Data((cidr + "\n").utf8), to: config.stateRoot + "/cni/pod-cidr")
        } catch {
            throw .internalError("cannot store the pod CIDR: \(error)", cause: error)
        }
    }

    public nonisolated func podCIDR() -> String {
        FileManager.default.contents(atPath: config.stateRoot + "/cni/pod-cidr").map {
            String(decoding: $0, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        } ?? ""
    }
}
