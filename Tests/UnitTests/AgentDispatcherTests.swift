import AgentAPI
import AgentService
import Testing

/// The guest agent's dispatcher against fake services: every request kind has exactly one handler,
/// each reaches its service, a refusal keeps its code, and replies, responses and events leave in
/// the order the host relies on.
@Suite struct AgentDispatcherTests {
    typealias Dispatcher = AgentDispatcher<FakeContainerService, FakePortService, FakePodService>

    func dispatcher() -> Dispatcher {
        AgentDispatcher(containers: FakeContainerService(), ports: FakePortService(), pod: FakePodService())
    }

    func request(_ build: (inout Cocoon_Agent_V4_Request) -> Void) -> Cocoon_Agent_V4_Request {
        var r = Cocoon_Agent_V4_Request()
        build(&r)
        return r
    }

    @Test func everyRequestKindHasOneHandler() {
        let d = dispatcher()
        // One of each kind of the agent API's Request.call.
        let all: [Cocoon_Agent_V4_Request] = [
            request { $0.health = .init() }, request { $0.shutdown = .init() },
            request { $0.createContainer = .init() }, request { $0.startContainer = .init() },
            request { $0.signal = .init() }, request { $0.exec = .init() }, request { $0.containerStatus = .init() },
            request { $0.removeContainer = .init() }, request { $0.unmountDisk = .init() },
            request { $0.updateResources = .init() }, request { $0.detach = .init() },
            request { $0.configurePod = .init() }, request { $0.updatePodResources = .init() },
            request { $0.writeStdin = .init() }, request { $0.resize = .init() }, request { $0.ackOutput = .init() },
            request { $0.openPort = .init() }, request { $0.writePort = .init() }, request { $0.ackPort = .init() },
            request { $0.closePort = .init() }, request { $0.authenticate = .init() },
        ]
        let names = all.map { d.name(of: $0) }
        #expect(!names.contains("unknown"))
        #expect(Set(names).count == all.count, "one handler per kind: \(names)")
        #expect(d.kinds.count == all.count && Set(d.kinds) == Set(names))
        #expect(d.name(of: Cocoon_Agent_V4_Request()) == "unknown")
    }

    @Test func containerCallsReachTheServiceAndRefusalsKeepTheirCode() {
        var d = dispatcher()
        let created = d.serve(request { $0.createContainer.id = "c1" }, id: 1)
        #expect(created.response?.hasError == false)
        let started = d.serve(request { $0.startContainer.id = "c1" }, id: 2)
        #expect(started.response?.startContainer.pid == 101)
        let missing = d.serve(request { $0.startContainer.id = "nope" }, id: 3)
        #expect(missing.response?.error.code == .notFound)
        #expect(missing.response?.error.message == "container nope not found in the guest")
        let again = d.serve(request { $0.createContainer.id = "c1" }, id: 4)
        #expect(again.response?.error.code == .failedPrecondition)
        #expect(d.serve(request { $0.containerStatus.id = "c1" }, id: 5).response?.containerStatus.pid == 7)
        #expect(d.containers.calls == ["create c1", "start c1", "start nope", "create c1"])
    }

    @Test func aRemovalsEventsFollowItsResponse() {
        var d = dispatcher()
        _ = d.serve(request { $0.createContainer.id = "c1" }, id: 1)
        let removed = d.serve(request { $0.removeContainer.id = "c1" }, id: 2)
        #expect(removed.events.count == 1)
        guard case .removeContainer? = removed.response?.result else {
            Issue.record("not a RemoveContainer response: \(String(describing: removed.response))")
            return
        }
        guard case .event(let event)? = removed.events.first else {
            Issue.record("no exit event")
            return
        }
        #expect(event.exit.containerID == "c1")
    }

    @Test func notificationsGetNoResponseAndUnknownKindsAreUnimplemented() {
        var d = dispatcher()
        let ack = d.serve(request { $0.ackOutput.bytes = 4096 }, id: 0)
        #expect(ack.response == nil && d.containers.calls == ["ack 4096"])
        let unknown = d.serve(Cocoon_Agent_V4_Request(), id: 9)
        #expect(unknown.response?.error.code == .unimplemented)
        #expect(unknown.response?.error.message.contains("agent API v\(agentAPIVersion)") == true)
        #expect(d.serve(Cocoon_Agent_V4_Request(), id: 0).response == nil)
    }

    @Test func writesAreAnsweredWhenDoneAndAClosesAbandonedWritesFirst() {
        var d = dispatcher()
        let now = d.serve(request { $0.writeStdin.containerID = "c1" }, id: 5)
        #expect(now.response == nil && now.replies.map(\.id) == [5])
        d.containers.stdinWritesAtOnce = false
        let later = d.serve(request { $0.writeStdin.containerID = "c1" }, id: 6)
        #expect(later.response == nil && later.replies.isEmpty, "answered by a later flush")
        let dialed = d.serve(request { $0.openPort.port = 8080 }, id: 7)
        #expect(dialed.replies.map(\.id) == [7] && dialed.response == nil)
        let refused = d.serve(request { $0.openPort.port = 0 }, id: 8)
        #expect(refused.response?.error.code == .invalidArgument)
        let closed = d.serve(request { $0.closePort.connectionID = 3 }, id: 10)
        #expect(closed.replies.map(\.id) == [99] && closed.replies.first?.failure?.code == .failedPrecondition)
        guard case .closePort? = closed.response?.result else {
            Issue.record("not a ClosePort response")
            return
        }
    }

    @Test func shutdownAndDetachTellTheSessionWhatFollows() {
        var d = dispatcher()
        #expect(d.serve(request { $0.shutdown = .init() }, id: 1).then == .powerOff)
        #expect(d.serve(request { $0.detach = .init() }, id: 2).then == .detach)
        #expect(d.serve(request { $0.health = .init() }, id: 3).then == .carryOn)
        #expect(d.serve(request { $0.health = .init() }, id: 3).response?.health.uptimeNs == 42)
    }

    @Test func podSettingsReachThePodAndARefusedSysctlSaysWhich() {
        var d = dispatcher()
        let ok = d.serve(request { $0.configurePod.sysctls = ["net.ipv4.ip_forward": "1"] }, id: 1)
        #expect(ok.response?.hasError == false)
        let bad = d.serve(request { $0.configurePod.sysctls = ["kernel.forbidden": "1"] }, id: 2)
        #expect(bad.response?.error.code == .invalidArgument)
        #expect(bad.response?.error.message.contains("kernel.forbidden") == true)
        #expect(d.pod.calls == ["configure 1", "configure 1"])
    }
}
