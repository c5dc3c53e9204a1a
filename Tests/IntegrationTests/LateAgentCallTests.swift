import CRIAPI
import Foundation
import GRPCCore
import Testing

@testable import Hypervisor

/// An agent call that goes unanswered is looked at before its deadline: the daemon logs what the
/// pod's VM is doing and kicks a running VM (pause and resume); a call that still runs out of time
/// says in its error what the VM was doing.
@Suite struct LateAgentCallTests {
    @Test func aLateCallShowsWhatTheVMIsDoingAndOnlyARunningVMIsKicked() async throws {
        try await withDaemon { daemon in
            _ = try await daemon.withImages { img in try await pull(img, "127.0.0.1:5000/busybox:latest") }
            try await daemon.withRuntime { rt in
                let pod = podConfig("late-call")
                try await withTestPod(rt, pod) { podID in
                    let container = try await runContainer(
                        rt, containerRequest("c", ["sleep", "3600"], pod: pod, podID: podID))
                    let qmp = daemon.runDir + "/vms/" + podID.prefix(16) + "/qmp.sock"
                    // A running VM is paused and resumed at once, and serves on.
                    #expect(await QEMUStallProbe.kick(qmp: qmp))
                    #expect(try await execScript(rt, container, "echo up").out == "up\n")

                    // A paused VM cannot answer: it is looked at, left paused, and the error says so.
                    #expect(await QMPClient.execute("stop", socketPath: qmp) != nil)
                    do {
                        _ = try await execScript(rt, container, "echo never")
                        Issue.record("an exec in a paused VM was answered")
                    } catch let error as RPCError {
                        #expect(error.code == .deadlineExceeded)
                        #expect(error.message.contains("the pod's VM: QEMU paused"), "\(error.message)")
                        #expect(error.message.contains("agent queues rx avail"), "\(error.message)")
                    }
                    #expect(daemon.daemonLog().contains("a pod's agent call is late; its VM was left as it is"))
                    #expect(await QMPClient.execute("cont", socketPath: qmp) != nil)
                    #expect(try await execScript(rt, container, "echo back").out == "back\n")
                }
            }
        }
    }
}
