import Testing

@testable import Containers

/// Where the agents' stream events go: each to the session of the pod and container that owns it,
/// never to another pod's; sessions end with their container.
@Suite struct StreamRoutesTests {
    func collect<S: AsyncSequence & Sendable>(_ stream: S) async -> [S.Element] where S.Element: Sendable {
        var all: [S.Element] = []
        do {
            for try await e in stream { all.append(e) }
        } catch {}
        return all
    }

    @Test func execOutputGoesToItsSessionAndAnotherPodsIsDropped() async {
        let routes = StreamRoutes(window: 256 << 10)
        let events = routes.addExec("e1", pod: "pod-a", container: "c1")
        #expect(routes.execOutput("e1", pod: "pod-a", container: "c1", stream: .stdout, Array("ok".utf8)))
        // pod-b's agent claims the exec: consumed (not an ExecSync's) but not delivered.
        #expect(routes.execOutput("e1", pod: "pod-b", container: "c1", stream: .stdout, Array("forged".utf8)))
        #expect(routes.execOutput("e1", pod: "pod-a", container: "c2", stream: .stderr, Array("forged".utf8)))
        #expect(!routes.execOutput("other", pod: "pod-a", container: "c1", stream: .stdout, [1]))
        #expect(routes.execExited("e1", pod: "pod-b", container: "c1", code: 0))
        #expect(routes.execExited("e1", pod: "pod-a", container: "c1", code: 7))
        #expect(await collect(events) == [.stdout(Array("ok".utf8)), .exit(7)])
    }

    /// An attach client that does not read holds the daemon to its window: 64 MiB of output (what
    /// 256 events of the old unbounded queue could hold is 4 GiB) leaves at most the window held for
    /// it, the rest dropped for it alone; a client that keeps up gets every byte.
    @Test func anAttachClientThatDoesNotReadHoldsAtMostItsWindow() async {
        let routes = StreamRoutes(window: 256 << 10)
        let idle = routes.addAttach("c1")
        let reader = routes.addAttach("c1")
        let chunk = [UInt8](repeating: 7, count: 64 << 10)  // one guest read
        for _ in 0..<1024 {
            routes.attachOutput("c1", stream: .stdout, chunk)
            routes.attachDelivered("c1", id: reader.id, chunk.count)  // the reader keeps up
        }
        let backlog = routes.attachBacklog("c1", id: idle.id)
        #expect((backlog?.held ?? .max) <= routes.limit, "held \(backlog?.held ?? -1) bytes")
        #expect((backlog?.dropped ?? 0) >= (64 << 20) - routes.limit)
        #expect(routes.attachBacklog("c1", id: reader.id)?.dropped == 0)
        routes.containerEnded("c1", code: 0)
        let got = await collect(reader.events)
        #expect(got.count == 1025 && got.last == .exit(0))
        _ = await collect(idle.events)
    }

    @Test func attachSessionsShareOutputAndEndWithTheContainer() async {
        let routes = StreamRoutes(window: 256 << 10)
        let first = routes.addAttach("c1")
        let second = routes.addAttach("c1")
        routes.attachOutput("c1", stream: .stdout, [1, 2])
        routes.removeAttach("c1", id: second.id)
        routes.attachOutput("c1", stream: .stderr, [3])
        routes.containerEnded("c1", code: 0)
        #expect(await collect(first.events) == [.stdout([1, 2]), .stderr([3]), .exit(0)])
        #expect(await collect(second.events) == [.stdout([1, 2])])
    }

    @Test func portDataOnlyFromTheConnectionsPod() async {
        let routes = StreamRoutes(window: 256 << 10)
        let events = routes.addPort(9, pod: "pod-a")
        routes.portData(9, pod: "pod-b", Array("forged".utf8))
        routes.portData(9, pod: "pod-a", Array("data".utf8))
        routes.portClosed(9, pod: "pod-b", error: "")
        routes.portClosed(9, pod: "pod-a", error: "dial tcp 127.0.0.1:80: connect: connection refused")
        #expect(
            await collect(events) == [
                .data(Array("data".utf8)), .closed(error: "dial tcp 127.0.0.1:80: connect: connection refused"),
            ])
    }

    @Test func execsOfAnEndedContainerEnd() async {
        let routes = StreamRoutes(window: 256 << 10)
        let events = routes.addExec("e1", pod: "pod-a", container: "c1")
        routes.containerEnded("c1", code: 0)
        #expect(await collect(events) == [.exit(137)])
    }

    /// A hostile guest ignores its window and floods while the client reads nothing: the route is
    /// cut once it holds more than the window plus one read, so the daemon never buffers more.
    @Test func aGuestOverrunningItsWindowHasItsExecCut() async {
        let routes = StreamRoutes(window: 256 << 10)
        let events = routes.addExec("e1", pod: "pod-a", container: "c1")
        let chunk = [UInt8](repeating: 7, count: 64 << 10)
        for _ in 0..<5 { #expect(routes.execOutput("e1", pod: "pod-a", container: "c1", stream: .stdout, chunk)) }
        // The sixth chunk goes over 256 KiB + 64 KiB: cut; what follows is no streaming exec's any more.
        #expect(routes.execOutput("e1", pod: "pod-a", container: "c1", stream: .stdout, chunk))
        #expect(!routes.execOutput("e1", pod: "pod-a", container: "c1", stream: .stdout, chunk))
        let received = await collect(events)
        #expect(received.count == 6)
        guard case .failed(let message)? = received.last else {
            Issue.record("expected the stream to be cut, got \(String(describing: received.last))")
            return
        }
        #expect(message.contains("window"))
    }

    /// The same volume is fine when the client takes it as it comes (the host acknowledges).
    @Test func acknowledgedOutputIsNeverCut() async {
        let routes = StreamRoutes(window: 256 << 10)
        let events = routes.addExec("e1", pod: "pod-a", container: "c1")
        let chunk = [UInt8](repeating: 7, count: 64 << 10)
        for _ in 0..<64 {
            #expect(routes.execOutput("e1", pod: "pod-a", container: "c1", stream: .stdout, chunk))
            routes.execDelivered("e1", chunk.count)
        }
        #expect(routes.execExited("e1", pod: "pod-a", container: "c1", code: 0))
        let received = await collect(events)
        #expect(received.count == 65)
        #expect(received.last == .exit(0))
    }

    @Test func aGuestOverrunningAPortWindowHasTheConnectionClosed() async {
        let routes = StreamRoutes(window: 1000, chunk: 100)
        let events = routes.addPort(9, pod: "pod-a")
        #expect(routes.portData(9, pod: "pod-a", [UInt8](repeating: 1, count: 600)))
        routes.portDelivered(9, 600)
        #expect(routes.portData(9, pod: "pod-a", [UInt8](repeating: 1, count: 1000)))
        #expect(!routes.portData(9, pod: "pod-a", [UInt8](repeating: 1, count: 200)))
        routes.portData(9, pod: "pod-a", [1])  // after the cut: nobody's
        let received = await collect(events)
        #expect(received.count == 3)
        guard case .closed(let error)? = received.last else {
            Issue.record("expected the connection to close")
            return
        }
        #expect(error.contains("window"))
    }

    /// A pod whose agent went away ends all its streams, and only its own.
    @Test func aPodsEndClosesItsStreamsOnly() async {
        let routes = StreamRoutes(window: 256 << 10)
        let exec = routes.addExec("e1", pod: "pod-a", container: "c1")
        let attach = routes.addAttach("c1")
        let port = routes.addPort(9, pod: "pod-a")
        let otherPort = routes.addPort(10, pod: "pod-b")
        routes.podEnded("pod-a", containers: ["c1"], reason: "lost the pod's agent")
        #expect(await collect(exec) == [.failed("lost the pod's agent")])
        #expect(await collect(attach.events) == [.failed("lost the pod's agent")])
        #expect(await collect(port) == [.closed(error: "lost the pod's agent")])
        routes.portData(10, pod: "pod-b", [1])
        routes.portClosed(10, pod: "pod-b", error: "")
        #expect(await collect(otherPort) == [.data([1]), .closed(error: "")])
    }
}
