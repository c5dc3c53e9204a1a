import AgentAPI
import Foundation
import Models

/// The agent API's calls, typed: `AgentClient` as a `GuestAgent`.
extension AgentClient: GuestAgent {
    public func health(timeout: Duration) async throws(AgentClientError) -> GuestHealth {
        let response = try await call(.with { $0.health = .init() }, name: "Health", timeout: timeout)
        guard case .health(let health)? = response.result else {
            throw .protocolViolation("Health answered with another result")
        }
        return GuestHealth(health)
    }

    public func shutdown(timeout: Duration) async throws(AgentClientError) {
        _ = try await call(.with { $0.shutdown = .init() }, name: "Shutdown", timeout: timeout)
    }

    public func detach(timeout: Duration) async throws(AgentClientError) {
        _ = try await call(.with { $0.detach = .init() }, name: "Detach", timeout: timeout)
    }

    public func configurePod(_ configuration: PodConfiguration, timeout: Duration) async throws(AgentClientError) {
        _ = try await call(
            .with { $0.configurePod = .init(configuration) }, name: "ConfigurePod", timeout: timeout)
    }

    public func updatePodResources(_ resources: ResourceLimits, timeout: Duration) async throws(AgentClientError) {
        let request = Cocoon_Agent_V4_Request.with { $0.updatePodResources = .with { $0.resources = .init(resources) } }
        _ = try await call(request, name: "UpdatePodResources", timeout: timeout)
    }

    public func unmountDisk(_ serial: String, timeout: Duration) async throws(AgentClientError) {
        _ = try await call(
            .with { $0.unmountDisk = .with { $0.serial = serial } }, name: "UnmountDisk", timeout: timeout)
    }

    public func createContainer(_ spec: ContainerCreateSpec, timeout: Duration) async throws(AgentClientError) {
        _ = try await call(.with { $0.createContainer = .init(spec) }, name: "CreateContainer", timeout: timeout)
    }

    public func startContainer(_ id: String, timeout: Duration) async throws(AgentClientError) -> Int32 {
        let response = try await call(
            .with { $0.startContainer = .with { $0.id = id } }, name: "StartContainer", timeout: timeout)
        guard case .startContainer(let r)? = response.result else {
            throw .protocolViolation("StartContainer answered with another result")
        }
        return r.pid
    }

    public func exec(
        container: String, execID: String, process: ProcessSpec, stdio: ExecStdio, timeout: Duration
    ) async throws(AgentClientError) -> Int32 {
        let request = Cocoon_Agent_V4_Request.with {
            $0.exec = .with {
                $0.containerID = container
                $0.execID = execID
                $0.process = .init(process)
                $0.stdin = stdio.stdin
                $0.tty = stdio.tty
                $0.outputWindow = UInt32(clamping: stdio.outputWindow)
                if stdio.tty, let size = stdio.size {
                    $0.width = UInt32(size.width)
                    $0.height = UInt32(size.height)
                }
            }
        }
        guard case .exec(let reply)? = try await call(request, name: "Exec", timeout: timeout).result else {
            throw .protocolViolation("Exec answered with another result")
        }
        return reply.pid
    }

    public func signal(container: String, exec: String, signal: Int32, timeout: Duration) async throws(AgentClientError)
    {
        let request = Cocoon_Agent_V4_Request.with {
            $0.signal = .with {
                $0.containerID = container
                $0.execID = exec
                $0.signal = signal
            }
        }
        _ = try await call(request, name: "Signal", timeout: timeout)
    }

    public func containerUsage(_ id: String, timeout: Duration) async throws(AgentClientError) -> ContainerUsage {
        let response = try await call(
            .with { $0.containerStatus = .with { $0.id = id } }, name: "ContainerStatus", timeout: timeout)
        guard case .containerStatus(let r)? = response.result else {
            throw .protocolViolation("ContainerStatus answered with another result")
        }
        return ContainerUsage(r)
    }

    public func updateResources(_ id: String, _ resources: ResourceLimits, timeout: Duration)
        async throws(AgentClientError)
    {
        let request = Cocoon_Agent_V4_Request.with {
            $0.updateResources = .with {
                $0.id = id
                $0.resources = .init(resources)
            }
        }
        _ = try await call(request, name: "UpdateResources", timeout: timeout)
    }

    public func removeContainer(_ id: String, timeout: Duration) async throws(AgentClientError) {
        _ = try await call(
            .with { $0.removeContainer = .with { $0.id = id } }, name: "RemoveContainer", timeout: timeout)
    }

    public func sendStdin(container: String, exec: String, _ data: [UInt8], close: Bool, timeout: Duration)
        -> AgentReply
    {
        let request = Cocoon_Agent_V4_Request.with {
            $0.writeStdin = .with {
                $0.containerID = container
                $0.execID = exec
                $0.data = Data(data)
                $0.close = close
            }
        }
        return start(request, name: "WriteStdin", timeout: timeout)
    }

    public func resize(container: String, exec: String, width: UInt32, height: UInt32, timeout: Duration)
        async throws(AgentClientError)
    {
        let request = Cocoon_Agent_V4_Request.with {
            $0.resize = .with {
                $0.containerID = container
                $0.execID = exec
                $0.width = width
                $0.height = height
            }
        }
        _ = try await call(request, name: "Resize", timeout: timeout)
    }

    public func ackOutput(container: String, exec: String, bytes: Int) {
        notify(
            .with {
                $0.ackOutput = .with {
                    $0.containerID = container
                    $0.execID = exec
                    $0.bytes = UInt64(clamping: bytes)
                }
            })
    }

    public func openPort(connection: UInt64, port: UInt16, window: Int, timeout: Duration)
        async throws(AgentClientError)
    {
        let request = Cocoon_Agent_V4_Request.with {
            $0.openPort = .with {
                $0.connectionID = connection
                $0.port = UInt32(port)
                $0.window = UInt32(clamping: window)
            }
        }
        _ = try await call(request, name: "OpenPort", timeout: timeout)
    }

    public func sendPort(connection: UInt64, _ data: [UInt8], close: Bool, timeout: Duration) -> AgentReply {
        let request = Cocoon_Agent_V4_Request.with {
            $0.writePort = .with {
                $0.connectionID = connection
                $0.data = Data(data)
                $0.close = close
            }
        }
        return start(request, name: "WritePort", timeout: timeout)
    }

    public func ackPort(connection: UInt64, bytes: Int) {
        notify(
            .with {
                $0.ackPort = .with {
                    $0.connectionID = connection
                    $0.bytes = UInt64(clamping: bytes)
                }
            })
    }

    public func closePort(connection: UInt64, timeout: Duration) async throws(AgentClientError) {
        _ = try await call(
            .with { $0.closePort = .with { $0.connectionID = connection } }, name: "ClosePort", timeout: timeout)
    }
}
