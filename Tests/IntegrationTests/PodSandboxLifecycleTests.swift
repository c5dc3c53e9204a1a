import CRIAPI
import Foundation
import GRPCCore
import Testing

/// Real VMs under the real daemon: each test boots guests through QEMU or libvirt.
@Suite(
    .serialized, .enabled(if: DaemonHarness.enabled, "set COCOON_GUEST_DIR to a built guest image (scripts/test does)"))
struct PodSandboxLifecycleTests {
    @Test(arguments: ["cocoon", "libvirt"])
    func runStatusListStopRemove(handler: String) async throws {
        try await withDaemon { daemon in
            try await daemon.withRuntime { rt in
                var run = podConfig("life-\(handler)", labels: ["suite": "life"])
                run.runtimeHandler = handler
                let id = try await rt.runPodSandbox(run).podSandboxID
                #expect(id.count == 64)

                var statusRequest = Runtime_V1_PodSandboxStatusRequest()
                statusRequest.podSandboxID = id
                statusRequest.verbose = true
                let status = try await rt.podSandboxStatus(statusRequest)
                #expect(status.status.state == .sandboxReady)
                #expect(status.status.metadata.name == "life-\(handler)")
                #expect(status.status.labels == ["suite": "life"])
                #expect(status.status.runtimeHandler == handler)
                #expect(status.status.createdAt > 0)
                let info = try #require(status.info["info"])
                #expect(info.contains("\"accel\":\"tcg\"") || info.contains("\"accel\":\"kvm\""))
                #expect(info.contains("\"hypervisor\":\"\(handler == "cocoon" ? "qemu" : "libvirt")\""))
                let pid = try vmPid(status)
                #expect(processAlive(pid))

                var list = Runtime_V1_ListPodSandboxRequest()
                list.filter.labelSelector = ["suite": "life"]
                #expect(try await rt.listPodSandbox(list).items.map(\.id) == [id])

                var stop = Runtime_V1_StopPodSandboxRequest()
                stop.podSandboxID = id
                _ = try await rt.stopPodSandbox(stop)
                _ = try await rt.stopPodSandbox(stop)  // idempotent
                #expect(!processAlive(pid))
                #expect(try await rt.podSandboxStatus(statusRequest).status.state == .sandboxNotready)

                var remove = Runtime_V1_RemovePodSandboxRequest()
                remove.podSandboxID = id
                _ = try await rt.removePodSandbox(remove)
                _ = try await rt.removePodSandbox(remove)  // idempotent
                await #expect(throws: RPCError.self) { try await rt.podSandboxStatus(statusRequest) }
                #expect(try await rt.listPodSandbox(Runtime_V1_ListPodSandboxRequest()).items.isEmpty)
            }
            #expect(daemon.leftoverFiles().isEmpty, "left behind: \(daemon.leftoverFiles())")
        }
    }

    @Test func killedVMIsReportedNotReadyAndRemoveStillCleansUp() async throws {
        try await withDaemon { daemon in
            try await daemon.withRuntime { rt in
                let id = try await rt.runPodSandbox(podConfig("killed")).podSandboxID
                var statusRequest = Runtime_V1_PodSandboxStatusRequest()
                statusRequest.podSandboxID = id
                statusRequest.verbose = true
                let pid = try vmPid(try await rt.podSandboxStatus(statusRequest))
                kill(pid, SIGKILL)
                // sleep: a poll pause; the loop checks the condition
                for _ in 0..<100 where processAlive(pid) { try await Task.sleep(for: .milliseconds(20)) }
                #expect(try await rt.podSandboxStatus(statusRequest).status.state == .sandboxNotready)
                var notReady = Runtime_V1_ListPodSandboxRequest()
                notReady.filter.state.state = .sandboxNotready
                #expect(try await rt.listPodSandbox(notReady).items.map(\.id) == [id])
                var remove = Runtime_V1_RemovePodSandboxRequest()
                remove.podSandboxID = id
                _ = try await rt.removePodSandbox(remove)
            }
            #expect(daemon.leftoverFiles().isEmpty, "left behind: \(daemon.leftoverFiles())")
        }
    }

    @Test func fourConcurrentPodsAllBoot() async throws {
        try await withDaemon { daemon in
            try await daemon.withRuntime { rt in
                let ids = try await withThrowingTaskGroup(of: String.self) { group in
                    for i in 0..<4 {
                        group.addTask { try await rt.runPodSandbox(podConfig("conc-\(i)")).podSandboxID }
                    }
                    var ids: [String] = []
                    for try await id in group { ids.append(id) }
                    return ids
                }
                #expect(Set(ids).count == 4)
                var ready = Runtime_V1_ListPodSandboxRequest()
                ready.filter.state.state = .sandboxReady
                #expect(Set(try await rt.listPodSandbox(ready).items.map(\.id)) == Set(ids))
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for id in ids {
                        group.addTask {
                            var remove = Runtime_V1_RemovePodSandboxRequest()
                            remove.podSandboxID = id
                            _ = try await rt.removePodSandbox(remove)
                        }
                    }
                    try await group.waitForAll()
                }
            }
            #expect(daemon.leftoverFiles().isEmpty, "left behind: \(daemon.leftoverFiles())")
        }
    }

    @Test func stateSurvivesADaemonRestart() async throws {
        try await withDaemon { daemon in
            let id = try await daemon.withRuntime { rt in try await rt.runPodSandbox(podConfig("survivor")).podSandboxID
            }
            await daemon.stop()
            try await daemon.start()
            try await daemon.withRuntime { rt in
                var statusRequest = Runtime_V1_PodSandboxStatusRequest()
                statusRequest.podSandboxID = id
                statusRequest.verbose = true
                let status = try await rt.podSandboxStatus(statusRequest)
                #expect(status.status.state == .sandboxReady)
                let pid = try vmPid(status)
                // The restarted daemon reaches the same guest agent again to shut it down.
                var stop = Runtime_V1_StopPodSandboxRequest()
                stop.podSandboxID = id
                _ = try await rt.stopPodSandbox(stop)
                #expect(!processAlive(pid))
                var remove = Runtime_V1_RemovePodSandboxRequest()
                remove.podSandboxID = id
                _ = try await rt.removePodSandbox(remove)
            }
            #expect(daemon.leftoverFiles().isEmpty)
        }
    }

    @Test func badRequestsGetClearStatuses() async throws {
        try await withDaemon { daemon in
            try await daemon.withRuntime { rt in
                func code(_ request: Runtime_V1_RunPodSandboxRequest) async -> (RPCError.Code?, String) {
                    do {
                        _ = try await rt.runPodSandbox(request)
                        return (nil, "")
                    } catch let e as RPCError {
                        return (e.code, e.message)
                    } catch {
                        return (nil, "\(error)")
                    }
                }
                var empty = Runtime_V1_RunPodSandboxRequest()
                empty.config.hostname = "x"
                #expect(await code(empty).0 == .invalidArgument)
                var noName = podConfig("x")
                noName.config.metadata.name = ""
                let (c, m) = await code(noName)
                #expect(c == .invalidArgument && m.contains("metadata.name"))
                var absurd = podConfig("big")
                absurd.config.linux.resources.memoryLimitInBytes = 1 << 50
                #expect(await code(absurd).0 == .invalidArgument)
                var tooBig = podConfig("big2")
                tooBig.config.annotations = ["io.cocoon.vm.memory_mib": "262144"]
                #expect(await code(tooBig).0 == .invalidArgument)
                var unknownHandler = podConfig("h")
                unknownHandler.runtimeHandler = "gvisor"
                let (hc, hm) = await code(unknownHandler)
                #expect(hc == .notFound && hm.contains("gvisor"))

                // Duplicate metadata: the second RunPodSandbox names the first sandbox.
                let id = try await rt.runPodSandbox(podConfig("dup")).podSandboxID
                let (dc, dm) = await code(podConfig("dup"))
                #expect(dc == .alreadyExists && dm.contains(id))

                // Stopping a sandbox that is gone succeeds (CRI: StopPodSandbox is idempotent); an empty id does not.
                var stopUnknown = Runtime_V1_StopPodSandboxRequest()
                stopUnknown.podSandboxID = "does-not-exist"
                _ = try await rt.stopPodSandbox(stopUnknown)
                stopUnknown.podSandboxID = ""
                await #expect(throws: RPCError.self) { try await rt.stopPodSandbox(stopUnknown) }
                var container = Runtime_V1_CreateContainerRequest()
                container.podSandboxID = id
                do {
                    _ = try await rt.createContainer(container)
                    Issue.record("CreateContainer without a config must be refused")
                } catch let e as RPCError {
                    #expect(e.code == .invalidArgument && e.message.contains("config.metadata.name"))
                }
                do {
                    _ = try await rt.attach(.with { $0.containerID = "x" })
                    Issue.record("Attach without a stream must be refused")
                } catch let e as RPCError {
                    #expect(e.code == .invalidArgument && e.message.contains("stdin, stdout, or stderr"))
                }
                do {
                    _ = try await rt.checkpointContainer(.with { $0.containerID = "x" })
                    Issue.record("CheckpointContainer should be UNIMPLEMENTED")
                } catch let e as RPCError {
                    #expect(e.code == .unimplemented)
                }
                var remove = Runtime_V1_RemovePodSandboxRequest()
                remove.podSandboxID = id
                _ = try await rt.removePodSandbox(remove)
            }
            #expect(daemon.leftoverFiles().isEmpty)
        }
    }
}
