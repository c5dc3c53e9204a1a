import ArgumentParser
import CRIAPI
import ContainerLogs
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2

/// `cocoonctl create POD_ID CONTAINER POD`: create a container from JSON/YAML ContainerConfig and PodSandboxConfig.
struct CreateContainer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create", abstract: "Create a container in a pod sandbox.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Pod sandbox ID (or unique prefix).") var podID: String
    @Argument(help: "Container config file (JSON or YAML).") var containerConfig: String
    @Argument(help: "Pod sandbox config file (JSON or YAML).") var podConfig: String

    func run() async throws {
        try await runCLI {
            var request = Runtime_V1_CreateContainerRequest()
            request.podSandboxID = podID
            request.config = try SpecFile.load(Runtime_V1_ContainerConfig.self, path: containerConfig)
            request.sandboxConfig = try SpecFile.load(Runtime_V1_PodSandboxConfig.self, path: podConfig)
            let response = try await global.endpoint().withClients { rt, _ in
                try await rt.createContainer(request, options: global.callOptions())
            }
            print(response.containerID)
        }
    }
}

/// One or more container ids (or unique prefixes), as start, stop and rm take them.
struct ContainerIDs: ParsableArguments {
    @Argument(help: "Container IDs (or unique prefixes).") var ids: [String]

    func validate() throws { if ids.isEmpty { throw ValidationError("give at least one container ID") } }
}

/// Runs one call per id, printing what `done` says of each (crictl prints container ids as they go).
func forEachID(
    _ ids: [String], global: GlobalOptions, done: @escaping @Sendable (String) -> String = { $0 },
    _ call:
        @escaping @Sendable (Runtime_V1_RuntimeService.Client<HTTP2ClientTransport.Posix>, String) async throws -> Void
) async throws {
    try await runCLI {
        try await global.endpoint().withClients { rt, _ in
            for id in ids {
                try await call(rt, id)
                print(done(id))
            }
        }
    }
}

struct StartContainer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "start", abstract: "Start one or more created containers.")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var targets: ContainerIDs

    func run() async throws {
        let options = global.callOptions()
        try await forEachID(targets.ids, global: global) { rt, id in
            _ = try await rt.startContainer(.with { $0.containerID = id }, options: options)
        }
    }
}

struct StopContainer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stop", abstract: "Stop running containers (StopSignal, then SIGKILL after the grace period).")
    @OptionGroup var global: GlobalOptions
    @Option(name: .long, help: "Seconds to wait before SIGKILL.") var grace: Int64 = 10
    @OptionGroup var targets: ContainerIDs

    func validate() throws {
        if grace < 0 { throw ValidationError("--grace must not be negative") }
    }

    func run() async throws {
        let options = global.callOptions()
        let grace = self.grace
        try await forEachID(targets.ids, global: global) { rt, id in
            _ = try await rt.stopContainer(
                .with {
                    $0.containerID = id
                    $0.timeout = grace
                }, options: options)
        }
    }
}

struct RemoveContainer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rm", abstract: "Remove containers (killing them if they run).")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var targets: ContainerIDs

    func run() async throws {
        let options = global.callOptions()
        try await forEachID(targets.ids, global: global) { rt, id in
            _ = try await rt.removeContainer(.with { $0.containerID = id }, options: options)
        }
    }
}

/// `cocoonctl ps`: list containers with crictl's filters and formats.
struct ListContainers: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ps", abstract: "List containers.")
    @OptionGroup var global: GlobalOptions
    @Flag(name: .shortAndLong, help: "Show all containers (default: running only).") var all = false
    @Option(help: "Filter by container ID (or prefix).") var id: String = ""
    @Option(name: .shortAndLong, help: "Filter by pod sandbox ID (or prefix).") var pod: String = ""
    @Option(help: "Filter by state: created, running, exited, unknown.") var state: String = ""
    @Option(help: "Filter by label key=value (repeatable).") var label: [String] = []
    @Option(help: "Filter by container name (substring).") var name: String = ""
    @Option(name: .shortAndLong, help: "Output format: table, json or yaml.") var output: String = "table"
    @Flag(name: .shortAndLong, help: "Only print container IDs.") var quiet = false
    @Flag(help: "Do not truncate IDs.") var noTrunc = false

    func validate() throws {
        _ = try ContainersQuery(id: id, pod: pod, state: state, all: all, labels: label, name: name)
        guard OutputFormat(rawValue: output) != nil else {
            throw ValidationError("--output must be table, json or yaml")
        }
    }

    func run() async throws {
        let query = try ContainersQuery(id: id, pod: pod, state: state, all: all, labels: label, name: name)
        try await runCLI {
            let response = try await global.endpoint().withClients { rt, _ in
                try await rt.listContainers(query.request, options: global.callOptions())
            }
            var result = Runtime_V1_ListContainersResponse()
            result.containers = response.containers.filter(query.matchesLocally).sorted { $0.createdAt > $1.createdAt }
            if quiet {
                result.containers.forEach { print($0.id) }
                return
            }
            try Render.emit(result, format: output) {
                let now = Int64(Date().timeIntervalSince1970 * 1e9)
                return Render.table(
                    ["CONTAINER", "IMAGE", "CREATED", "STATE", "NAME", "ATTEMPT", "POD ID"],
                    result.containers.map { c in
                        [
                            noTrunc ? c.id : String(c.id.prefix(13)), c.image.image,
                            Render.age(sinceNs: c.createdAt, nowNs: now),
                            ContainersQuery.stateName(c.state), c.metadata.name, "\(c.metadata.attempt)",
                            noTrunc ? c.podSandboxID : String(c.podSandboxID.prefix(13)),
                        ]
                    })
            }
        }
    }
}

/// The parsed filters of `ps`: server side (id, pod, state, labels), client side (name, running-only).
public struct ContainersQuery: Equatable {
    public var request = Runtime_V1_ListContainersRequest()
    public var name: String
    public var runningOnly: Bool

    public init(
        id: String = "", pod: String = "", state: String = "", all: Bool = false, labels: [String] = [],
        name: String = ""
    ) throws {
        self.name = name
        var filter = Runtime_V1_ContainerFilter()
        filter.id = id
        filter.podSandboxID = pod
        switch state.lowercased() {
        case "": break
        case "created": filter.state.state = .containerCreated
        case "running": filter.state.state = .containerRunning
        case "exited": filter.state.state = .containerExited
        case "unknown": filter.state.state = .containerUnknown
        default: throw ValidationError("--state must be created, running, exited or unknown, not \"\(state)\"")
        }
        runningOnly = !all && state.isEmpty
        for pair in labels {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty else {
                throw ValidationError("--label \"\(pair)\" must be key=value")
            }
            filter.labelSelector[String(parts[0])] = String(parts[1])
        }
        if !id.isEmpty || !pod.isEmpty || !state.isEmpty || !labels.isEmpty { request.filter = filter }
    }

    public func matchesLocally(_ c: Runtime_V1_Container) -> Bool {
        (name.isEmpty || c.metadata.name.contains(name)) && (!runningOnly || c.state == .containerRunning)
    }

    public static func stateName(_ s: Runtime_V1_ContainerState) -> String {
        switch s {
        case .containerCreated: "Created"
        case .containerRunning: "Running"
        case .containerExited: "Exited"
        default: "Unknown"
        }
    }
}

struct InspectContainer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect", abstract: "Show a container's status (verbose, JSON or YAML).")
    @OptionGroup var global: GlobalOptions
    @Option(name: .shortAndLong, help: "Output format: json or yaml.") var output: String = "json"
    @Argument(help: "Container ID (or unique prefix).") var id: String

    func run() async throws {
        try await runCLI {
            let response = try await global.endpoint().withClients { rt, _ in
                try await rt.containerStatus(
                    .with {
                        $0.containerID = id
                        $0.verbose = true
                    }, options: global.callOptions())
            }
            print(output == "yaml" ? try Render.yaml(response) : try Render.json(response))
        }
    }
}

/// `cocoonctl logs [-f] [--tail N] ID`: the container's CRI log file, read on this host.
struct ContainerLogs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "logs", abstract: "Print a container's logs.")
    @OptionGroup var global: GlobalOptions
    @Flag(name: .shortAndLong, help: "Follow the log until the container exits.") var follow = false
    @Option(help: "Only the last N lines.") var tail: Int?
    @Flag(name: .shortAndLong, help: "Show each line's timestamp.") var timestamps = false
    @Argument(help: "Container ID (or unique prefix).") var id: String

    func run() async throws {
        try await runCLI {
            let status = try await global.endpoint().withClients { rt, _ in
                try await rt.containerStatus(.with { $0.containerID = id }, options: global.callOptions()).status
            }
            guard !status.logPath.isEmpty else { throw CLIError("container \(id) has no log path") }
            guard let handle = FileHandle(forReadingAtPath: status.logPath) else {
                throw CLIError("cannot open \(status.logPath)")
            }
            var reader = CRILogReader(timestamps: timestamps)
            var lines = reader.feed(handle.readDataToEndOfFile())
            if let tail { lines = Array(lines.suffix(max(tail, 0))) }
            lines.forEach { emit($0) }
            guard follow else { return }
            while true {
                let more = handle.availableData
                if !more.isEmpty {
                    reader.feed(more).forEach { emit($0) }
                    continue
                }
                let state = try await global.endpoint().withClients { rt, _ in
                    try await rt.containerStatus(.with { $0.containerID = status.id }, options: global.callOptions())
                        .status.state
                }
                if state != .containerRunning && state != .containerCreated {
                    reader.feed(handle.readDataToEndOfFile()).forEach { emit($0) }
                    return
                }
                try await Task.sleep(for: .milliseconds(200))
            }
        }
    }

    func emit(_ line: CRILogReader.Line) {
        let handle = line.stream == .stderr ? FileHandle.standardError : FileHandle.standardOutput
        handle.write(Data(line.text.utf8))
    }
}

struct ContainerStatsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stats", abstract: "Show container resource usage.")
    @OptionGroup var global: GlobalOptions
    @Option(name: .shortAndLong, help: "Filter by pod sandbox ID (or prefix).") var pod: String = ""
    @Option(name: .shortAndLong, help: "Output format: table, json or yaml.") var output: String = "table"
    @Argument(help: "Container IDs (all running containers when none).") var ids: [String] = []

    func run() async throws {
        try await runCLI {
            let response = try await global.endpoint().withClients { rt, _ in
                try await rt.listContainerStats(.with { $0.filter.podSandboxID = pod }, options: global.callOptions())
            }
            var result = Runtime_V1_ListContainerStatsResponse()
            result.stats = response.stats.filter { s in ids.isEmpty || ids.contains { s.attributes.id.hasPrefix($0) } }
            try Render.emit(result, format: output) {
                Render.table(
                    ["CONTAINER", "NAME", "CPU (s)", "MEM"],
                    result.stats.map { s in
                        [
                            String(s.attributes.id.prefix(13)), s.attributes.metadata.name,
                            String(format: "%.2f", Double(s.cpu.usageCoreNanoSeconds.value) / 1e9),
                            String(format: "%.1fMiB", Double(s.memory.workingSetBytes.value) / 1_048_576),
                        ]
                    })
            }
        }
    }
}

/// `cocoonctl run CONTAINER POD`: pull, run the pod, create and start the container — one step.
struct RunContainer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run", abstract: "Pull the image, run a pod and start a container in it.")
    @OptionGroup var global: GlobalOptions
    @Option(name: .long, help: "Runtime handler (RuntimeClass handler).") var runtime: String = ""
    @Argument(help: "Container config file (JSON or YAML).") var containerConfig: String
    @Argument(help: "Pod sandbox config file (JSON or YAML).") var podConfig: String

    func run() async throws {
        try await runCLI {
            let container = try SpecFile.load(Runtime_V1_ContainerConfig.self, path: containerConfig)
            let pod = try SpecFile.load(Runtime_V1_PodSandboxConfig.self, path: podConfig)
            let id = try await global.endpoint().withClients { rt, img in
                // Pull only what the node does not have (the kubelet's IfNotPresent).
                if !(try await img.imageStatus(.with { $0.image = container.image }, options: global.callOptions())
                    .hasImage)
                {
                    _ = try await img.pullImage(
                        .with {
                            $0.image = container.image
                            $0.sandboxConfig = pod
                        }, options: global.callOptions())
                }
                let podID = try await rt.runPodSandbox(
                    .with {
                        $0.config = pod
                        $0.runtimeHandler = runtime
                    }, options: global.callOptions()
                ).podSandboxID
                let id = try await rt.createContainer(
                    .with {
                        $0.podSandboxID = podID
                        $0.config = container
                        $0.sandboxConfig = pod
                    }, options: global.callOptions()
                ).containerID
                _ = try await rt.startContainer(.with { $0.containerID = id }, options: global.callOptions())
                return id
            }
            print(id)
        }
    }
}
