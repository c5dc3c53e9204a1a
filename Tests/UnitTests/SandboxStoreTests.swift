import AgentClient
import Foundation
import Hypervisor
import Sandboxes
import Testing

@Suite struct SandboxStoreTests {
    func tempDir() throws -> String {
        let dir = NSTemporaryDirectory() + "cocoon-store-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    func record(_ id: String, name: String = "p", labels: [String: String] = [:], state: SandboxRecord.State = .ready)
        -> SandboxRecord
    {
        SandboxRecord(
            id: id, metadata: PodMetadata(name: name, uid: "u", namespace: "ns", attempt: 1), labels: labels,
            annotations: ["a": "b"],
            runtimeHandler: "cocoon", createdAtNs: 42, vcpus: 1, memoryMiB: 256,
            vm: VMHandle(
                backend: .qemu, name: "cocoon-\(id.prefix(12))", pid: 1234, accel: .tcg,
                agent: .serial(path: "/run/a.sock"),
                controlSocket: "/run/q.sock", consoleLog: "/x/console.log", runDir: "/run/x", launchedAtNs: 1)
        )
        .moved(to: state)
    }

    @Test func roundTripsAndDeletes() async throws {
        let root = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let store = SandboxManager.store(stateRoot: root)
        let a = record("aaaa", labels: ["app": "x"])
        try store.save(a)
        try store.save(record("bbbb", state: .notReady))
        let loaded = store.loadAll()
        #expect(loaded.count == 2)
        #expect(loaded.first == a)
        try store.delete("aaaa")
        #expect(store.loadAll().map(\.id) == ["bbbb"])
        #expect(!FileManager.default.fileExists(atPath: root + "/sandboxes/aaaa"))
        try store.delete("aaaa")  // idempotent
    }

    @Test func corruptFileIsMovedAsideNotLost() async throws {
        let root = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let store = SandboxManager.store(stateRoot: root)
        try store.save(record("good"))
        try FileManager.default.createDirectory(atPath: root + "/sandboxes/bad", withIntermediateDirectories: true)
        try Data("{not json".utf8).write(to: URL(fileURLWithPath: root + "/sandboxes/bad/sandbox.json"))
        #expect(store.loadAll().map(\.id) == ["good"])
        #expect(FileManager.default.fileExists(atPath: root + "/sandboxes/bad/sandbox.json.corrupt"))
    }

    @Test func filterMatchesIdPrefixStateAndLabels() {
        let r = record("abc123", labels: ["app": "web", "tier": "front"])
        #expect(SandboxFilter().matches(r))
        #expect(SandboxFilter(id: "abc").matches(r))
        #expect(!SandboxFilter(id: "abd").matches(r))
        #expect(SandboxFilter(ready: true).matches(r))
        #expect(!SandboxFilter(ready: false).matches(r))
        #expect(SandboxFilter(labels: ["app": "web"]).matches(r))
        #expect(!SandboxFilter(labels: ["app": "web", "tier": "back"]).matches(r))
        #expect(!SandboxFilter(labels: ["missing": ""]).matches(r))
    }

    @Test func reservedNameIsContainerdStyle() {
        #expect(PodMetadata(name: "n", uid: "u", namespace: "ns", attempt: 2).reservedName == "n_ns_u_2")
    }
}

extension SandboxRecord {
    /// The record after the events that lead from `creating` to `state`.
    func moved(to state: State) -> SandboxRecord {
        var r = self
        if state != .creating {
            r.transition(.booted(bootMs: 1, guest: GuestInfo(GuestHealth(apiVersion: 3, agentVersion: "test"))))
        }
        if state == .notReady { r.transition(.stopped(reason: "stopped", atNs: 43)) }
        return r
    }
}
