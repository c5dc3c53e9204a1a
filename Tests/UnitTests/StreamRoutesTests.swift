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
        let routes = StreamRoutes()
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

    @Test func attachSessionsShareOutputAndEndWithTheContainer() async {
        let routes = StreamRoutes()
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
        let routes = StreamRoutes()
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
        let routes = StreamRoutes()
        let events = routes.addExec("e1", pod: "pod-a", container: "c1")
        routes.containerEnded("c1", code: 0)
        #expect(await collect(events) == [.exit(137)])
    }
}
