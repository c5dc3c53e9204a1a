import AgentClient
import Config
import Containers
import Errors
import Foundation
import Hypervisor
import PodNetwork
import Sandboxes
import Synchronization
import Testing

/// The sandbox state machine and the manager's contract, with a fake hypervisor and fake agents: no VM.
@Suite struct SandboxManagerTests {
    struct Fixture {
        let root: String
        let hypervisor: FakeHypervisor
        let agents = Shared<[FakeGuestAgent]>([])
        let network: FakePodNetwork
        let manager: SandboxManager

        /// `hypervisor`: the VMs a previous daemon left running (a restart), or a fresh host.
        init(
            root: String? = nil, hypervisor: FakeHypervisor = FakeHypervisor(),
            apiVersion: UInt32 = hostAgentAPIVersion,
            network: FakePodNetwork = FakePodNetwork()
        ) async throws {
            self.network = network
            let root = try root ?? temporaryStateRoot()
            self.root = root
            self.hypervisor = hypervisor
            var config = CocoonConfig()
            config.stateRoot = root
            config.runDir = root + "/run"
            let agents = self.agents
            manager = SandboxManager(config: config, hypervisors: [hypervisor], network: network) {
                _, token, _, _, onEvent async throws(AgentClientError) in
                let agent = FakeGuestAgent()
                agent.state.withLock {
                    $0.token = token
                    $0.onEvent = onEvent
                    $0.apiVersion = apiVersion
                }
                agents.withLock { $0.append(agent) }
                return agent
            }
            await manager.recover()
        }

        func run(_ name: String, uid: String = "u1") async throws -> String {
            try await manager.run(
                RunRequest(metadata: PodMetadata(name: name, uid: uid, namespace: "default", attempt: 0)))
        }

        func end() { try? FileManager.default.removeItem(atPath: root) }  // a temporary directory; nothing to keep
    }

    @Test func runMakesAReadyPersistedSandbox() async throws {
        let f = try await Fixture()
        defer { f.end() }
        let id = try await f.run("web")
        let record = try await f.manager.status(id)
        #expect(record.state == .ready && record.guest?.agentVersion == "fake" && record.bootMs != nil)
        #expect(FileManager.default.fileExists(atPath: f.root + "/sandboxes/\(id)/sandbox.json"))
        #expect(await f.manager.isReady(id))
        let taken = await #expect(throws: CocoonError.self) { _ = try await f.run("web") }
        #expect(taken?.code == .alreadyExists)
        _ = try await f.run("web", uid: "u2")
    }

    @Test func aVMHandlerRefusesTheNodesNetworkAndNamesTheNativeHandlers() async throws {
        let f = try await Fixture()
        defer { f.end() }
        var request = RunRequest(metadata: PodMetadata(name: "host", uid: "u1", namespace: "default", attempt: 0))
        request.hostNetwork = true
        let refused = await #expect(throws: CocoonError.self) { _ = try await f.manager.run(request) }
        #expect(refused?.code == .invalidArgument)
        #expect(refused?.message.contains("namespace_options.network") == true)
        #expect(refused?.message.contains("backend = \"native\"") == true, "\(refused?.message ?? "")")
        #expect(await f.manager.list(SandboxFilter()).isEmpty, "nothing of the refused pod is kept")
        request.hostNetwork = false
        request.hostPID = true
        let pid = await #expect(throws: CocoonError.self) { _ = try await f.manager.run(request) }
        #expect(pid?.code == .invalidArgument && pid?.message.contains("namespace_options.pid") == true)
        var handlers = CocoonConfig().handlers
        handlers["trusted"] = RuntimeHandler(backend: .native)
        let named = SandboxManager.hostNamespaceRefusal("network", "cocoon", natives: handlers)
        #expect(
            named.contains("runtime handler \"cocoon\"") && named.contains("native handler")
                && named.contains("trusted"))
    }

    @Test func aFailedBootLeavesNothingBehind() async throws {
        let f = try await Fixture()
        defer { f.end() }
        f.hypervisor.state.withLock { $0.bootError = .bootFailed("qemu: no") }
        let error = await #expect(throws: CocoonError.self) { _ = try await f.run("web") }
        #expect(error?.code == .internalError && error?.cause is HypervisorError)
        #expect(await f.manager.list(SandboxFilter()).isEmpty)
        #expect((try? FileManager.default.contentsOfDirectory(atPath: f.root + "/sandboxes"))?.isEmpty ?? true)
        let p = String(f.network.calls.first?.dropFirst(6) ?? "")
        #expect(f.network.calls == ["setUp \(p)", "tearDown \(p)", "removeNamespace \(p)"], "the network is undone")
        f.hypervisor.state.withLock { $0.bootError = nil }
        _ = try await f.run("web")  // the name is free again
    }

    @Test func thePodNetworkIsSetUpBeforeBootGivenToTheVMAndTheGuestAndUndoneOnce() async throws {
        let f = try await Fixture()
        defer { f.end() }
        let id = try await f.run("web")
        let p = String(id.prefix(8))
        let spec = try #require(f.hypervisor.state.withLock { $0.booted.first })
        #expect(spec.nic?.mac == "02:00:00:00:00:01" && spec.nic?.mtu == 1500)
        let record = try await f.manager.status(id)
        #expect(record.network?.ips == ["10.99.0.2"] && record.network?.deleted == false)
        let configured = try #require(f.agents.withLock { $0.first?.state.withLock { $0.podConfiguration } })
        #expect(configured.interface?.addresses == ["10.99.0.2/24"] && configured.hostname == "web\n")
        #expect(configured.hosts.contains("10.99.0.2\tweb") && !configured.resolvConf.isEmpty)
        try await f.manager.stop(id)
        try await f.manager.stop(id)
        #expect(try await f.manager.status(id).network?.deleted == true)
        try await f.manager.remove(id)
        #expect(f.network.calls == ["setUp \(p)", "tearDown \(p)", "removeNamespace \(p)"], "DEL runs once")
    }

    @Test func aFailedNetworkSetUpBootsNoVMAndNamesTheCause() async throws {
        let f = try await Fixture()
        defer { f.end() }
        f.network.state.withLock { $0.failSetUp = .noConfig("no CNI network config found in /etc/cni/net.d") }
        let error = await #expect(throws: CocoonError.self) { _ = try await f.run("web") }
        #expect(error?.code == .failedPrecondition && error?.message.contains("/etc/cni/net.d") == true)
        #expect(f.hypervisor.state.withLock { $0.booted.isEmpty })
        #expect(await f.manager.list(SandboxFilter()).isEmpty)
        f.network.state.withLock { $0.failSetUp = .plugin("CNI plugin bridge failed (ADD): no IPs left") }
        let plugin = await #expect(throws: CocoonError.self) { _ = try await f.run("web") }
        #expect(plugin?.message.contains("no IPs left") == true)
    }

    @Test func anOldGuestAgentIsRefused() async throws {
        let f = try await Fixture(apiVersion: hostAgentAPIVersion - 1)
        defer { f.end() }
        let error = await #expect(throws: CocoonError.self) { _ = try await f.run("web") }
        #expect(error?.code == .failedPrecondition)
        #expect(f.hypervisor.state.withLock { $0.stopped.count } == 1, "the VM is ended again")
    }

    @Test func eachVMGetsItsOwnTokenInA0600FileAndTheAgentIsAskedWithIt() async throws {
        let f = try await Fixture()
        defer { f.end() }
        let a = try await f.run("a")
        _ = try await f.run("b")
        let specs = f.hypervisor.state.withLock { $0.booted }
        let files = specs.compactMap(\.agentTokenFile)
        #expect(files.count == 2 && files[0] == f.root + "/sandboxes/\(a)/agent.token")
        var info = stat()
        #expect(stat(files[0], &info) == 0 && info.st_mode & 0o777 == 0o600)
        let onDisk = try files.map { Array(try Data(contentsOf: URL(fileURLWithPath: $0))) }
        let given = f.agents.withLock { $0.map { $0.state.withLock { $0.token } } }
        #expect(onDisk[0].count == 32 && onDisk[0] != onDisk[1], "32 random bytes per VM")
        #expect(given == onDisk)
    }

    @Test func aBrokenChannelOfALiveVMIsReplacedWithTheToken() async throws {
        let f = try await Fixture()
        defer { f.end() }
        let id = try await f.run("web")
        let first = try #require(f.agents.withLock { $0.first })
        first.state.withLock { $0.open = false }  // the guest garbled its stream; the host closed it
        let (_, again) = try await f.manager.readyAgent(id)
        let second = try #require(again as? FakeGuestAgent)
        #expect(second !== first && second.state.withLock { $0.token } == first.state.withLock { $0.token })
        let (_, same) = try await f.manager.readyAgent(id)
        #expect((same as? FakeGuestAgent) === second, "an open channel is kept")
    }

    @Test func aVMThatDiesMakesThePodNotReady() async throws {
        let f = try await Fixture()
        defer { f.end() }
        let id = try await f.run("web")
        let vm = try #require(try await f.manager.status(id).vm)
        f.hypervisor.crash(vm.name)
        let record = try await f.manager.status(id)
        #expect(record.state == .notReady && record.reason == "VM exited unexpectedly" && record.stoppedAtNs != nil)
        #expect(await !f.manager.isReady(id))
        let error = await #expect(throws: CocoonError.self) { _ = try await f.manager.readyAgent(id) }
        #expect(error?.code == .failedPrecondition)
    }

    @Test func stopAndRemoveAreIdempotent() async throws {
        let f = try await Fixture()
        defer { f.end() }
        let id = try await f.run("web")
        try await f.manager.stop(id)
        let stopped = try await f.manager.status(id)
        #expect(stopped.state == .notReady && stopped.reason == "stopped")
        #expect(f.agents.withLock { $0.first?.calls.contains("Shutdown") } == true)
        try await f.manager.stop(id)
        #expect(try await f.manager.status(id).stoppedAtNs == stopped.stoppedAtNs, "a second stop keeps the first time")
        try await f.manager.remove(id)
        try await f.manager.remove(id)
        try await f.manager.stop("ffff")
        let missing = await #expect(throws: CocoonError.self) { _ = try await f.manager.status(id) }
        #expect(missing?.code == .notFound)
        _ = try await f.run("web")  // the name is free after remove
    }

    @Test func agentEventsAreTaggedWithTheirPod() async throws {
        let f = try await Fixture()
        defer { f.end() }
        let a = try await f.run("a")
        let b = try await f.run("b")
        let agents = f.agents.withLock { $0 }
        agents[1].send(.exit(containerID: "c", execID: "", exitCode: 1, oomKilled: false))
        agents[0].send(.exit(containerID: "c", execID: "", exitCode: 0, oomKilled: false))
        f.manager.endAgentEvents()
        var pods: [String] = []
        for await tagged in f.manager.agentEvents { pods.append(tagged.podID) }
        #expect(pods == [b, a])
    }

    @Test func aRestartedManagerFindsItsSandboxes() async throws {
        let first = try await Fixture()
        let ready = try await first.run("ready")
        let stopped = try await first.run("stopped")
        try await first.manager.stop(stopped)
        // A record left booting by a crash.
        let creating = SandboxRecord(
            id: String(repeating: "c", count: 64),
            metadata: PodMetadata(name: "booting", uid: "u", namespace: "default", attempt: 0), labels: [:],
            annotations: [:], runtimeHandler: "cocoon", createdAtNs: 1, vcpus: 1, memoryMiB: 256)
        try SandboxManager.store(stateRoot: first.root).save(creating)

        let second = try await Fixture(root: first.root, hypervisor: first.hypervisor)
        defer { second.end() }
        #expect(try await second.manager.status(ready).state == .ready)
        #expect(try await second.manager.status(stopped).state == .notReady)
        let gone = await #expect(throws: CocoonError.self) { _ = try await second.manager.status(creating.id) }
        #expect(gone?.code == .notFound)
        // Its VM's handle was never saved: the driver was asked to end what it finds by the VM's name.
        #expect(first.hypervisor.state.withLock { $0.reaped } == [VMSpec.vmName(forID: creating.id)])
        let taken = await #expect(throws: CocoonError.self) { _ = try await second.run("ready") }
        #expect(taken?.code == .alreadyExists, "recovered sandboxes keep their names")
    }

    /// VM users are the factory's: a pod holds its own from its start until it is removed (stopped
    /// ones too), a restarted daemon holds the recovered pods' again, and a removed pod's is free.
    @Test func eachPodHoldsItsOwnVMUserUntilItIsRemoved() async throws {
        let first = try await Fixture()
        let a = try await first.run("a")
        let b = try await first.run("b")
        let uidA = try #require(try await first.manager.status(a).vmUID)
        let uidB = try #require(try await first.manager.status(b).vmUID)
        #expect(uidA != uidB)
        try await first.manager.stop(a)
        let c = try await first.run("c")
        let uidC = try #require(try await first.manager.status(c).vmUID)
        #expect(![uidA, uidB].contains(uidC), "a stopped pod keeps its VM user")

        let second = try await Fixture(root: first.root, hypervisor: first.hypervisor)
        defer { second.end() }
        let d = try await second.run("d")
        let uidD = try #require(try await second.manager.status(d).vmUID)
        #expect(![uidA, uidB, uidC].contains(uidD), "recovered pods hold their VM users again")
        try await second.manager.remove(a)
        let e = try await second.run("e")
        #expect(try await second.manager.status(e).vmUID == uidA, "a removed pod's VM user is the lowest free one")
    }

    @Test func podResourcesStayWithinTheVM() async throws {
        let f = try await Fixture()
        defer { f.end() }
        let id = try await f.run("web")
        try await f.manager.updateResources(id, ResourceLimits(memoryLimitBytes: 128 << 20))
        let tooBig = await #expect(throws: CocoonError.self) {
            try await f.manager.updateResources(id, ResourceLimits(memoryLimitBytes: 1 << 40))
        }
        #expect(tooBig?.code == .failedPrecondition)
        let tooManyCPUs = await #expect(throws: CocoonError.self) {
            try await f.manager.updateResources(id, ResourceLimits(cpuQuotaMicros: 400_000, cpuPeriodMicros: 100_000))
        }
        #expect(tooManyCPUs?.code == .failedPrecondition)
    }
}
