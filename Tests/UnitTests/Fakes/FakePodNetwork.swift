import Foundation
import PodNetwork
import Synchronization

/// Pod networking without namespaces or plugins, for the sandbox manager's unit tests: records each
/// call; `failSetUp` makes the next set-up fail like a plugin.
final class FakePodNetwork: PodNetworking {
    struct State {
        var calls: [String] = []
        var failSetUp: CNIError?
        var ready = true
    }
    let state = Mutex(State())

    var calls: [String] { state.withLock { $0.calls } }

    func readiness() async -> NetworkReadiness {
        state.withLock { $0.ready }
            ? NetworkReadiness(ready: true, message: "") : NetworkReadiness(ready: false, message: "no config")
    }

    func adoptHostTap(_ state: PodNetworkState) async throws(CNIError) {
        if let tap = state.hostTap { self.state.withLock { $0.calls.append("adoptHostTap \(tap)") } }
    }

    func setUp(_ request: PodNetworkRequest, tap: TapPlacement) async throws(CNIError) -> PodNetworkAttachment {
        if let failure = state.withLock({ s -> CNIError? in
            s.calls.append("setUp \(request.podID.prefix(8))")
            defer { s.failSetUp = nil }
            return s.failSetUp
        }) {
            throw failure
        }
        let fd = open("/dev/null", O_RDONLY | O_CLOEXEC)
        return PodNetworkAttachment(
            state: PodNetworkState(
                namespace: "cocoon-" + request.podID.prefix(16), network: "fake", ifName: "eth0",
                mac: "02:00:00:00:00:01", mtu: 1500, addresses: ["10.99.0.2/24"],
                routes: [.init(destination: "0.0.0.0/0", gateway: "10.99.0.1")]),
            tapFD: fd)
    }

    func tearDown(podID: String, _ state: PodNetworkState) async throws(CNIError) {
        self.state.withLock { $0.calls.append("tearDown \(podID.prefix(8))") }
    }

    func removeNamespace(_ state: PodNetworkState) async {
        self.state.withLock { $0.calls.append("removeNamespace \(state.namespace.dropFirst(7).prefix(8))") }
    }

    func check(podID: String, _ state: PodNetworkState) async throws(CNIError) {
        self.state.withLock { $0.calls.append("check \(podID.prefix(8))") }
    }
}
