import AgentClient
import ContainerCore
import Containers
import Errors
import Foundation
import Models
import Testing

/// The container state machine and the manager's contract, with fake pods and agents: no VM.
@Suite struct ContainerManagerTests {
    /// A manager over fake pods "pod-a" and "pod-b", draining their events.
    struct Fixture {
        let root: String
        let pods: FakePodAgents
        let manager: ContainerManager
        let events: Task<Void, Never>

        init(root: String? = nil, pods: FakePodAgents = FakePodAgents(pods: ["pod-a", "pod-b"])) async throws {
            self.root = try root ?? temporaryStateRoot()
            self.pods = pods
            manager = ContainerManager(pods: pods, stateRoot: self.root, agentCall: .seconds(2))
            await manager.recover()
            events = Task { [manager] in await manager.processEvents() }
        }

        func request(_ name: String, pod: String = "pod-a", attempt: UInt32 = 0) -> ContainerManager.CreateRequest {
            var r = ContainerManager.CreateRequest(
                sandboxID: pod, name: name, attempt: attempt, image: "busybox",
                imageID: "sha256:" + String(repeating: "ab", count: 32),
                rootfsImage: "/nonexistent/rootfs.erofs", process: ProcessSpec(args: ["sleep", "1000"]))
            r.logPath = root + "/logs/\(name).log"
            return r
        }

        func state(_ id: String) async throws -> ContainerRecord.State { try await manager.status(id).state }

        func end() {
            pods.finish()
            events.cancel()
            try? FileManager.default.removeItem(atPath: root)  // a temporary directory; nothing to keep
        }
    }

    @Test func anExitKeepsTheAgentsTimeOnlyWithinWhatTheHostSaw() {
        // A native pod's agent saw the exit while no daemon ran: its time is kept.
        #expect(ContainerManager.exitTime(reported: 150, startedAtNs: 100, receivedAtNs: 900) == 150)
        // No time said: when the event came.
        #expect(ContainerManager.exitTime(reported: 0, startedAtNs: 100, receivedAtNs: 900) == 900)
        // A guest clock before the start or after the event is held to the host's bounds.
        #expect(ContainerManager.exitTime(reported: 5, startedAtNs: 100, receivedAtNs: 900) == 100)
        #expect(ContainerManager.exitTime(reported: 5_000, startedAtNs: 100, receivedAtNs: 900) == 900)
        #expect(ContainerManager.exitTime(reported: 5, startedAtNs: nil, receivedAtNs: 900) == 900)
    }

    @Test func lifecycleFromCreateToExitInOrder() async throws {
        let f = try await Fixture()
        defer { f.end() }
        let lifecycle = f.manager.lifecycleEvents()
        let id = try await f.manager.create(f.request("web"))
        #expect(try await f.state(id) == .created)
        #expect(f.pods.disks("pod-a").count == 1, "the image disk is attached once")
        try await f.manager.start(id)
        #expect(try await f.state(id) == .running)
        f.pods.agent("pod-a")?.send(.output(containerID: id, execID: "", stream: .stdout, data: Array("hello\n".utf8)))
        f.pods.agent("pod-a")?.send(.exit(containerID: id, execID: "", exitCode: 0, oomKilled: false))
        #expect(try await eventually { try await f.state(id) == .exited })
        let record = try await f.manager.status(id)
        #expect(record.exitCode == 0 && record.reason == "Completed" && record.pid == 42)
        let log = try String(contentsOfFile: f.root + "/logs/web.log", encoding: .utf8)
        #expect(log.hasSuffix(" stdout F hello\n"))
        var kinds: [ContainerEvent.Kind] = []
        for await event in lifecycle {
            kinds.append(event.kind)
            if kinds.count == 3 { break }
        }
        #expect(kinds == [.created, .started, .stopped])
    }

    @Test func exitBeforeStartAnswersKeepsTheExit() async throws {
        let f = try await Fixture()
        defer { f.end() }
        let id = try await f.manager.create(f.request("quick"))
        let agent = try #require(f.pods.agent("pod-a"))
        agent.onStart.withLock {
            $0 = { [agent] id in agent.send(.exit(containerID: id, execID: "", exitCode: 3, oomKilled: false)) }
        }
        try await f.manager.start(id)
        #expect(try await eventually { try await f.state(id) == .exited })
        // sleep: a late event may land within this window; the record must keep the exit
        try await Task.sleep(for: .milliseconds(20))
        let record = try await f.manager.status(id)
        #expect(record.state == .exited && record.exitCode == 3 && record.reason == "Error")
        #expect(record.startedAtNs != nil && record.pid == 42)
        #expect(try #require(record.startedAtNs) <= #require(record.finishedAtNs), "started before it finished")
    }

    /// The state machine alone: an exit recorded before the start keeps the exit, and the start
    /// time is never after the finish time.
    @Test func anExitBeforeItsStartIsFinal() {
        var r = ContainerRecord(
            id: "c", sandboxID: "p", name: "n", attempt: 0, image: "i", imageID: "sha256:x", imageRef: nil,
            imageDiskSerial: "s",
            labels: [:], annotations: [:], logPath: "", mounts: [], stopSignal: 15, createdAtNs: 1, process: nil,
            configJSON: nil)
        let exited = r.transition(.exited(code: 3, reason: "Error", message: nil, atNs: 100))
        let started = r.transition(.started(pid: 9, atNs: 200))
        #expect(exited && started)
        #expect(r.state == .exited && r.pid == 9 && r.startedAtNs == 100 && r.finishedAtNs == 100)
        let again = r.transition(.exited(code: 0, reason: "Completed", message: nil, atNs: 300))
        #expect(!again, "exited is final")
        #expect(r.exitCode == 3)
    }

    @Test func startRefusedByTheAgentEndsTheContainer() async throws {
        let f = try await Fixture()
        defer { f.end() }
        let id = try await f.manager.create(f.request("bad"))
        f.pods.agent("pod-a")?.refuse("StartContainer", with: .agent(.invalidArgument, message: "exec: no such file"))
        let error = await #expect(throws: CocoonError.self) { try await f.manager.start(id) }
        #expect(error?.code == .invalidArgument)
        #expect(error?.cause is AgentClientError)
        let record = try await f.manager.status(id)
        #expect(record.state == .exited && record.exitCode == 128 && record.reason == "StartError")
        await #expect(throws: CocoonError.self) { try await f.manager.start(id) }
    }

    @Test func idsNamesAndIdempotence() async throws {
        let f = try await Fixture()
        defer { f.end() }
        let id = try await f.manager.create(f.request("web"))
        let taken = await #expect(throws: CocoonError.self) { _ = try await f.manager.create(f.request("web")) }
        #expect(taken?.code == .alreadyExists)
        _ = try await f.manager.create(f.request("web", attempt: 1))
        _ = try await f.manager.create(f.request("web", pod: "pod-b"))
        #expect(try await f.manager.status(String(id.prefix(12))).id == id, "a unique prefix finds the container")
        let missing = await #expect(throws: CocoonError.self) { _ = try await f.manager.status("ffff") }
        #expect(missing?.code == .notFound)
        let empty = await #expect(throws: CocoonError.self) { _ = try await f.manager.status("") }
        #expect(empty?.code == .invalidArgument)
        try await f.manager.stop("ffff", timeout: .seconds(1))
        try await f.manager.remove("ffff")
        try await f.manager.remove(id)
        try await f.manager.remove(id)
        #expect(try await f.manager.list(inSandbox: "pod-a").count == 1)
        let notReady = await #expect(throws: CocoonError.self) {
            _ = try await f.manager.create(f.request("x", pod: "pod-z"))
        }
        #expect(notReady?.code == .notFound)
    }

    @Test func stopSignalsThenKills() async throws {
        let f = try await Fixture()
        defer { f.end() }
        let agent = try #require(f.pods.agent("pod-a"))
        var request = f.request("web")
        request.stopSignal = SIGQUIT
        let id = try await f.manager.create(request)
        try await f.manager.start(id)
        try await f.manager.stop(id, timeout: .seconds(5))
        #expect(try await f.manager.status(id).exitCode == 128 + SIGQUIT)
        #expect(agent.state.withLock { $0.signals.map(\.signal) } == [SIGQUIT])

        // A process that ignores its stop signal gets SIGKILL after the timeout.
        let stubborn = try await f.manager.create(f.request("stubborn"))
        try await f.manager.start(stubborn)
        agent.state.withLock { $0.exitOnSignal = nil }
        let killer = Task { try await f.manager.stop(stubborn, timeout: .milliseconds(100)) }
        #expect(try await eventually { agent.state.withLock { $0.signals.last?.signal } == SIGKILL })
        agent.send(.exit(containerID: stubborn, execID: "", exitCode: 137, oomKilled: false))
        try await killer.value
        #expect(try await f.state(stubborn) == .exited)
    }

    @Test func aContainerEndsWithItsPod() async throws {
        let f = try await Fixture()
        defer { f.end() }
        let id = try await f.manager.create(f.request("web"))
        try await f.manager.start(id)
        f.pods.setReady("pod-a", false)
        let record = try await f.manager.status(id)
        #expect(record.state == .exited && record.exitCode == 137 && record.message == "the pod sandbox stopped")
    }

    @Test func eventsOfOtherPodsAndUnknownIdsAreIgnored() async throws {
        let f = try await Fixture()
        defer { f.end() }
        let id = try await f.manager.create(f.request("web"))
        try await f.manager.start(id)
        // pod-b's (hostile) agent claims pod-a's container exited, and writes into its log.
        f.pods.send(.exit(containerID: id, execID: "", exitCode: 0, oomKilled: false), from: "pod-b")
        f.pods.send(.output(containerID: id, execID: "", stream: .stdout, data: Array("forged\n".utf8)), from: "pod-b")
        f.pods.send(.exit(containerID: "nope", execID: "", exitCode: 0, oomKilled: false), from: "pod-a")
        // A marker event from the right pod, processed after the others.
        f.pods.send(.output(containerID: id, execID: "", stream: .stdout, data: Array("real\n".utf8)), from: "pod-a")
        #expect(
            try await eventually {
                (try? String(contentsOfFile: f.root + "/logs/web.log", encoding: .utf8))?.contains("real") == true
            })
        #expect(try await f.state(id) == .running)
        #expect(try String(contentsOfFile: f.root + "/logs/web.log", encoding: .utf8).contains("forged") == false)
        #expect(await f.manager.droppedEvents == ["pod-b": 2, "pod-a": 1])
    }

    /// Copied mounts must fit the one agent frame their CreateContainer travels in: 13 MiB of them
    /// is INVALID_ARGUMENT naming the limit, before the agent is asked anything.
    @Test func mountsTooLargeForOneAgentFrameAreRefused() async throws {
        let f = try await Fixture()
        defer { f.end() }
        let big = NSTemporaryDirectory() + "cocoon-big-\(UUID().uuidString.prefix(8)).bin"
        FileManager.default.createFile(atPath: big, contents: Data(count: 13 << 20))
        defer { try? FileManager.default.removeItem(atPath: big) }  // test scratch
        var r = f.request("web")
        r.mounts = [.init(hostPath: big, containerPath: "/data/big.bin", readOnly: true)]
        let error = await #expect(throws: CocoonError.self) { _ = try await f.manager.create(r) }
        #expect(
            error?.code == .invalidArgument && error?.message.contains("12 MiB") == true, "\(String(describing: error))"
        )
    }

    @Test func execSyncCollectsOutputAndTimesOut() async throws {
        let f = try await Fixture()
        defer { f.end() }
        let agent = try #require(f.pods.agent("pod-a"))
        let id = try await f.manager.create(f.request("web"))
        await #expect(throws: CocoonError.self) {
            _ = try await f.manager.execSync(id, command: ["true"], timeout: .zero)
        }
        try await f.manager.start(id)
        agent.state.withLock {
            $0.execOutput = Array("out".utf8)
            $0.execExit = 7
        }
        let result = try await f.manager.execSync(id, command: ["sh", "-c", "exit 7"], timeout: .seconds(5))
        #expect(result.exitCode == 7 && result.stdout == Array("out".utf8))
        agent.state.withLock { $0.execExit = nil }
        let timedOut = await #expect(throws: CocoonError.self) {
            _ = try await f.manager.execSync(id, command: ["sleep", "9"], timeout: .milliseconds(50))
        }
        #expect(timedOut?.code == .deadlineExceeded)
        #expect(agent.state.withLock { $0.signals.last.map { !$0.exec.isEmpty && $0.signal == SIGKILL } } == true)
        let empty = await #expect(throws: CocoonError.self) {
            _ = try await f.manager.execSync(id, command: [], timeout: .zero)
        }
        #expect(empty?.code == .invalidArgument)
    }

    /// An ExecSync ends when its pod's agent goes away (the VM died): UNAVAILABLE at once, not when
    /// its timeout runs out, nor never when it has none. (The test gives it 30 s, so that without
    /// the fix it fails rather than hangs.) Another pod's agent going away does not end it.
    @Test func execSyncEndsWhenThePodsAgentIsLost() async throws {
        let f = try await Fixture()
        defer { f.end() }
        let agent = try #require(f.pods.agent("pod-a"))
        let id = try await f.manager.create(f.request("web"))
        try await f.manager.start(id)
        agent.state.withLock { $0.execExit = nil }  // the command never ends by itself
        let started = ContinuousClock.now
        let call = Task { try await f.manager.execSync(id, command: ["sleep", "1000"], timeout: .seconds(30)) }
        #expect(await eventually { agent.calls.contains("Exec") }, "the exec is under way")
        f.pods.send(.disconnected(reason: "test"), from: "pod-b")
        // sleep: another pod's agent going away must not end the call within this window
        try await Task.sleep(for: .milliseconds(100))
        f.pods.send(.disconnected(reason: "the VM died"), from: "pod-a")
        let error = await #expect(throws: CocoonError.self) { _ = try await call.value }
        #expect(
            error?.code == .unavailable && error?.message.contains("the VM died") == true,
            "\(String(describing: error))")
        #expect(ContinuousClock.now - started < .seconds(10))
    }

    @Test func aRestartedManagerFindsItsContainers() async throws {
        let pods = FakePodAgents(pods: ["pod-a", "pod-b"])
        let first = try await Fixture(pods: pods)
        let running = try await first.manager.create(first.request("running"))
        try await first.manager.start(running)
        let created = try await first.manager.create(first.request("created", pod: "pod-b"))
        first.events.cancel()

        pods.setReady("pod-b", false)
        let second = try await Fixture(root: first.root, pods: pods)
        defer { second.end() }
        #expect(try await second.state(running) == .running)
        #expect(try await second.manager.status(created).state == .created)
        #expect(try await second.manager.list().map(\.id).sorted() == [running, created].sorted())
    }

    @Test func aFailedSaveFailsTheCallAndLeavesNothing() async throws {
        let f = try await Fixture()
        defer { f.end() }
        // The containers directory cannot be created: a file stands in its place.
        FileManager.default.createFile(atPath: f.root + "/containers", contents: Data())
        let error = await #expect(throws: CocoonError.self) { _ = try await f.manager.create(f.request("web")) }
        #expect(error?.code == .internalError)
        #expect(try await f.manager.list().isEmpty)
        #expect(f.pods.agent("pod-a")?.calls.contains("RemoveContainer") == true)
        #expect(f.pods.disks("pod-a").isEmpty, "the image disk is released again")
    }

    @Test func aRecordFromBeforeTheTypedSeamKeepsItsProcess() async throws {
        let pods = FakePodAgents(pods: ["pod-a"])
        let first = try await Fixture(pods: pods)
        let id = try await first.manager.create(first.request("old"))
        try await first.manager.start(id)
        first.events.cancel()
        // Rewrite the record as the previous release saved it: the process as agent API JSON.
        let file = first.root + "/containers/\(id)/container.json"
        var json = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: file))) as? [String: Any])
        json["process"] = nil
        json["processJSON"] =
            #"{"args":["sleep","1000"],"env":["A=1"],"workingDir":"/srv","user":{"uid":1000},"#
            + #""capabilities":["CAP_CHOWN"],"noNewPrivileges":true,"seccomp":{"kind":"RUNTIME_DEFAULT"}}"#
        try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: file))

        let second = try await Fixture(root: first.root, pods: pods)
        defer { second.end() }
        let process = try #require(try await second.manager.status(id).process)
        #expect(process.env == ["A=1"] && process.workingDir == "/srv" && process.user.uid == 1000)
        #expect(process.capabilities.map(\.description) == ["CAP_CHOWN"] && process.noNewPrivileges)
        #expect(process.seccomp == .runtimeDefault)
        let saved = try String(contentsOfFile: file, encoding: .utf8)
        #expect(!saved.contains("processJSON"), "the record is saved in today's form")
    }
}
