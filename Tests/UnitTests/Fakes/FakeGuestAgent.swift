import AgentClient
import ContainerCore
import Foundation
import Models
import Synchronization

/// A guest agent without a VM: records every call, answers from a script, and lets a test send the
/// events a real agent would (output, exits). `onStart` runs inside StartContainer, before it answers.
final class FakeGuestAgent: GuestAgent, Sendable {
    struct State {
        var calls: [String] = []
        var created: [String: ContainerCreateSpec] = [:]
        var signals: [(container: String, exec: String, signal: Int32)] = []
        var refuse: [String: AgentClientError] = [:]
        var execExit: Int32?
        var execOutput: [UInt8] = []
        var exitOnSignal: Int32? = 0
        var onEvent: (@Sendable (AgentEvent) -> Void)?
        var apiVersion = hostAgentAPIVersion
        /// The channel is up; a test sets it false to play a channel that broke.
        var open = true
        var podConfiguration: PodConfiguration?
        /// The token the sandbox manager connected with.
        var token: [UInt8] = []
    }
    let state = Mutex(State())

    var calls: [String] { state.withLock { $0.calls } }
    func refuse(_ call: String, with error: AgentClientError) { state.withLock { $0.refuse[call] = error } }

    /// Delivers an event as if the agent had sent it.
    func send(_ event: AgentEvent) { state.withLock { $0.onEvent }?(event) }

    private func record(_ call: String) throws(AgentClientError) {
        let refusal = state.withLock { s -> AgentClientError? in
            s.calls.append(call)
            return s.refuse[call]
        }
        if let refusal { throw refusal }
    }

    func health(timeout: Duration) async throws(AgentClientError) -> GuestHealth {
        try record("Health")
        return GuestHealth(
            apiVersion: state.withLock { $0.apiVersion }, agentVersion: "fake", kernelRelease: "6.1-fake",
            transport: "serial")
    }
    func shutdown(timeout: Duration) async throws(AgentClientError) { try record("Shutdown") }
    func detach(timeout: Duration) async throws(AgentClientError) { try record("Detach") }
    func close() async {
        state.withLock {
            $0.calls.append("close")
            $0.open = false
        }
    }
    var isOpen: Bool { state.withLock { $0.open } }
    func configurePod(_ configuration: PodConfiguration, timeout: Duration) async throws(AgentClientError) {
        state.withLock { $0.podConfiguration = configuration }
        try record("ConfigurePod")
    }
    func updatePodResources(_ resources: ResourceLimits, timeout: Duration) async throws(AgentClientError) {
        try record("UpdatePodResources")
    }
    func unmountDisk(_ serial: String, timeout: Duration) async throws(AgentClientError) { try record("UnmountDisk") }

    func createContainer(_ spec: ContainerCreateSpec, timeout: Duration) async throws(AgentClientError) {
        try record("CreateContainer")
        state.withLock { $0.created[spec.id] = spec }
    }

    /// Set by a test: what happens inside StartContainer before it answers (a process that exits at once).
    let onStart = Mutex<(@Sendable (String) -> Void)?>(nil)

    func startContainer(_ id: String, timeout: Duration) async throws(AgentClientError) -> Int32 {
        try record("StartContainer")
        onStart.withLock { $0 }?(id)
        return 42
    }

    func exec(container: String, execID: String, process: ProcessSpec, stdio: ExecStdio, timeout: Duration)
        async throws(AgentClientError) -> Int32
    {
        try record("Exec")
        let (output, exit) = state.withLock { ($0.execOutput, $0.execExit) }
        if !output.isEmpty { send(.output(containerID: container, execID: execID, stream: .stdout, data: output)) }
        if let exit { send(.exit(containerID: container, execID: execID, exitCode: exit, oomKilled: false)) }
        return 43
    }

    func signal(container: String, exec: String, signal: Int32, timeout: Duration) async throws(AgentClientError) {
        try record("Signal")
        let exitCode = state.withLock { s -> Int32? in
            s.signals.append((container, exec, signal))
            return s.exitOnSignal
        }
        // By default the process dies of the signal, as a shell would report it.
        if exec.isEmpty, exitCode != nil {
            send(.exit(containerID: container, execID: "", exitCode: 128 + signal, oomKilled: false))
        }
    }

    func containerUsage(_ id: String, timeout: Duration) async throws(AgentClientError) -> ContainerUsage {
        try record("ContainerStatus")
        return ContainerUsage(cpuUsageNs: 5_000_000_000, memoryBytes: 1 << 20, memoryWorkingSetBytes: 1 << 19, pids: 2)
    }
    func updateResources(_ id: String, _ resources: ResourceLimits, timeout: Duration) async throws(AgentClientError) {
        try record("UpdateResources")
    }
    func removeContainer(_ id: String, timeout: Duration) async throws(AgentClientError) {
        try record("RemoveContainer")
    }

    // Streams: recorded; the real ones are tested against a VM (StreamingIntegrationTests).
    func sendStdin(container: String, exec: String, _ data: [UInt8], close: Bool, timeout: Duration) -> AgentReply {
        let result = Result { () throws(AgentClientError) in try record("WriteStdin") }
        return AgentReply { () throws(AgentClientError) in try result.get() }
    }
    func resize(container: String, exec: String, width: UInt32, height: UInt32, timeout: Duration)
        async throws(AgentClientError)
    { try record("Resize") }
    func ackOutput(container: String, exec: String, bytes: Int) {}
    func openPort(connection: UInt64, port: UInt16, window: Int, timeout: Duration) async throws(AgentClientError) {
        try record("OpenPort")
    }
    func sendPort(connection: UInt64, _ data: [UInt8], close: Bool, timeout: Duration) -> AgentReply {
        let result = Result { () throws(AgentClientError) in try record("WritePort") }
        return AgentReply { () throws(AgentClientError) in try result.get() }
    }
    func ackPort(connection: UInt64, bytes: Int) {}
    func closePort(connection: UInt64, timeout: Duration) async throws(AgentClientError) { try record("ClosePort") }
}
