import ArgumentParser
import CRIAPI
import Foundation
import GRPCCore

/// `cocoonctl`: a crictl-like CRI client. It works against any CRI endpoint (cocoond, containerd).
public struct CocoonCtl: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "cocoonctl",
        abstract: "A CRI client for Cocoon (and any CRI runtime).",
        subcommands: [
            Version.self, Info.self, RunPod.self, StopPod.self, RemovePod.self, Pods.self, InspectPod.self,
            Pull.self, ImagesList.self, RemoveImage.self, InspectImage.self, ImageGroup.self,
            CreateContainer.self, StartContainer.self, StopContainer.self, RemoveContainer.self, ListContainers.self,
            InspectContainer.self, ExecContainer.self, AttachContainer.self, PortForwardPod.self, ContainerLogs.self,
            ContainerStatsCommand.self,
            RunContainer.self, TemplateGroup.self, Doctor.self,
        ])

    public init() {}
}

/// Options every command takes.
public struct GlobalOptions: ParsableArguments {
    @Option(name: [.customShort("r"), .long], help: "CRI endpoint (env CONTAINER_RUNTIME_ENDPOINT).")
    public var runtimeEndpoint: String =
        ProcessInfo.processInfo.environment["CONTAINER_RUNTIME_ENDPOINT"] ?? Endpoint.defaultValue

    @Option(help: "Seconds to wait for each call.")
    public var timeout: Int = 300

    public init() {}

    func endpoint() throws -> Endpoint { try Endpoint(parsing: runtimeEndpoint) }

    func callOptions() -> CallOptions {
        var options = CallOptions.defaults
        options.timeout = .seconds(timeout)
        return options
    }
}

/// Runs a command body and turns RPC failures into a one-line error and exit status 1.
func runCLI(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let error as RPCError {
        FileHandle.standardError.write(Data("cocoonctl: \(error.code): \(error.message)\n".utf8))
        throw ExitCode.failure
    } catch let error as CLIError {
        FileHandle.standardError.write(Data("cocoonctl: \(error.description)\n".utf8))
        throw ExitCode.failure
    }
}

struct Version: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the runtime's name and versions.")
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        try await runCLI {
            let v = try await global.endpoint().withClients { rt, _ in
                try await rt.version(Runtime_V1_VersionRequest(), options: global.callOptions())
            }
            print(
                "Version:  \(v.version)\nRuntimeName:  \(v.runtimeName)\nRuntimeVersion:  "
                    + "\(v.runtimeVersion)\nRuntimeApiVersion:  \(v.runtimeApiVersion)"
            )
        }
    }
}

struct Info: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the runtime's status, handlers and configuration.")
    @OptionGroup var global: GlobalOptions
    @Option(name: .shortAndLong, help: "Output format: json or yaml.") var output: String = "json"

    func run() async throws {
        try await runCLI {
            var request = Runtime_V1_StatusRequest()
            request.verbose = true
            let status = try await global.endpoint().withClients { rt, _ in
                try await rt.status(request, options: global.callOptions())
            }
            print(output == "yaml" ? try Render.yaml(status) : try Render.json(status))
        }
    }
}

struct RunPod: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "runp", abstract: "Run a pod sandbox from a JSON or YAML PodSandboxConfig.")
    @OptionGroup var global: GlobalOptions
    @Option(name: .long, help: "Runtime handler (RuntimeClass handler).") var runtime: String = ""
    @Argument(help: "Pod sandbox config file (JSON or YAML).") var configFile: String

    func run() async throws {
        try await runCLI {
            var request = Runtime_V1_RunPodSandboxRequest()
            request.config = try SpecFile.load(Runtime_V1_PodSandboxConfig.self, path: configFile)
            request.runtimeHandler = runtime
            let response = try await global.endpoint().withClients { rt, _ in
                try await rt.runPodSandbox(request, options: global.callOptions())
            }
            print(response.podSandboxID)
        }
    }
}

struct StopPod: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stopp", abstract: "Stop one or more pod sandboxes.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Pod sandbox IDs (or unique prefixes).") var ids: [String]

    func validate() throws { if ids.isEmpty { throw ValidationError("give at least one pod sandbox ID") } }

    func run() async throws {
        let options = global.callOptions()
        try await forEachID(ids, global: global, done: { "Stopped sandbox \($0)" }) { rt, id in
            _ = try await rt.stopPodSandbox(.with { $0.podSandboxID = id }, options: options)
        }
    }
}

struct RemovePod: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rmp", abstract: "Remove one or more pod sandboxes (stopping them first).")
    @OptionGroup var global: GlobalOptions
    @Flag(name: .shortAndLong, help: "Remove all pod sandboxes.") var all = false
    @Argument(help: "Pod sandbox IDs (or unique prefixes).") var ids: [String] = []

    func validate() throws {
        if ids.isEmpty && !all { throw ValidationError("give at least one pod sandbox ID, or --all") }
    }

    func run() async throws {
        try await runCLI {
            try await global.endpoint().withClients { rt, _ in
                var targets = ids
                if all {
                    targets = try await rt.listPodSandbox(
                        Runtime_V1_ListPodSandboxRequest(), options: global.callOptions()
                    ).items.map(\.id)
                }
                for id in targets {
                    var request = Runtime_V1_RemovePodSandboxRequest()
                    request.podSandboxID = id
                    _ = try await rt.removePodSandbox(request, options: global.callOptions())
                    print("Removed sandbox \(id)")
                }
            }
        }
    }
}

struct InspectPod: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspectp", abstract: "Show a pod sandbox's status, with its VM.")
    @OptionGroup var global: GlobalOptions
    @Option(name: .shortAndLong, help: "Output format: json, yaml or table.") var output: String = "json"
    @Argument(help: "Pod sandbox IDs (or unique prefixes).") var ids: [String]

    func validate() throws {
        if ids.isEmpty { throw ValidationError("give at least one pod sandbox ID") }
        guard OutputFormat(rawValue: output) != nil else {
            throw ValidationError("--output must be json, yaml or table")
        }
    }

    func run() async throws {
        try await runCLI {
            try await global.endpoint().withClients { rt, _ in
                for id in ids {
                    var request = Runtime_V1_PodSandboxStatusRequest()
                    request.podSandboxID = id
                    request.verbose = true
                    let status = try await rt.podSandboxStatus(request, options: global.callOptions())
                    switch OutputFormat(rawValue: output) ?? .json {
                    case .json: print(try Render.json(status))
                    case .yaml: print(try Render.yaml(status))
                    case .table: print(InspectTable.render(status))
                    }
                }
            }
        }
    }
}

/// The human summary of `inspectp -o table`: the pod and the VM behind it.
enum InspectTable {
    static func render(_ response: Runtime_V1_PodSandboxStatusResponse) -> String {
        let s = response.status
        var rows: [[String]] = [
            ["ID", s.id], ["NAME", s.metadata.name], ["NAMESPACE", s.metadata.namespace], ["UID", s.metadata.uid],
            ["ATTEMPT", "\(s.metadata.attempt)"],
            ["STATE", s.state == .sandboxReady ? "SANDBOX_READY" : "SANDBOX_NOTREADY"],
            ["RUNTIME", s.runtimeHandler],
            ["IP", ([s.network.ip] + s.network.additionalIps.map(\.ip)).filter { !$0.isEmpty }.joined(separator: ",")],
        ]
        // try?: not JSON: shown as is
        if let text = response.info["info"],
            let info = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
            let vm = info["vm"] as? [String: Any]
        {
            func field(_ key: String) -> String { vm[key].map { "\($0)" } ?? "-" }
            rows += [
                ["HYPERVISOR", field("hypervisor")], ["VM", field("vm_name")], ["VM PID", field("pid")],
                ["ACCEL", field("accel")],
                ["VCPUS", field("vcpus")], ["MEMORY MIB", field("memory_mib")], ["BOOT MS", field("boot_ms")],
                ["CONSOLE LOG", field("console_log")], ["VMM UID", field("vmm_uid")],
                ["VMM SECCOMP", field("vmm_seccomp")], ["VMM CGROUP", field("vmm_cgroup")],
            ]
            if let network = info["network"] as? [String: Any] {
                rows += [
                    ["NETNS", network["namespace"].map { "/var/run/netns/\($0)" } ?? "-"],
                    ["NETWORK", network["network"].map { "\($0)" } ?? "-"],
                    ["MAC", network["mac"].map { "\($0)" } ?? "-"],
                ]
            }
        }
        return rows.map { $0[0].padding(toLength: 12, withPad: " ", startingAt: 0) + $0[1] }.joined(separator: "\n")
    }
}
