import ArgumentParser
import CRIAPI
import Foundation

/// `cocoonctl pods`: list pod sandboxes with crictl's filters and formats.
struct Pods: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List pod sandboxes.")
    @OptionGroup var global: GlobalOptions
    @Option(help: "Filter by pod sandbox ID (or prefix).") var id: String = ""
    @Option(help: "Filter by state: ready or notready.") var state: String = ""
    @Option(help: "Filter by label key=value (repeatable).") var label: [String] = []
    @Option(help: "Filter by pod name (substring).") var name: String = ""
    @Option(help: "Filter by namespace (substring).") var namespace: String = ""
    @Option(name: .shortAndLong, help: "Output format: table, wide (adds each pod's IPs), json or yaml.")
    var output: String = "table"
    @Flag(name: .shortAndLong, help: "Only print pod sandbox IDs.") var quiet = false
    @Flag(help: "Do not truncate IDs.") var noTrunc = false

    func validate() throws {
        _ = try PodsQuery(id: id, state: state, labels: label, name: name, namespace: namespace)
        guard OutputFormat(rawValue: output) != nil || output == "wide" else {
            throw ValidationError("--output must be table, wide, json or yaml")
        }
    }

    func run() async throws {
        let query = try PodsQuery(id: id, state: state, labels: label, name: name, namespace: namespace)
        try await runCLI {
            let response = try await global.endpoint().withClients { rt, _ in
                try await rt.listPodSandbox(query.request, options: global.callOptions())
            }
            var result = Runtime_V1_ListPodSandboxResponse()
            result.items = response.items.filter(query.matchesLocally).sorted { $0.createdAt > $1.createdAt }
            if quiet {
                result.items.forEach { print($0.id) }
                return
            }
            // wide: each pod's IPs, from its status (ListPodSandbox carries none).
            var ips: [String: String] = [:]
            if output == "wide" {
                for pod in result.items {
                    let status = try await global.endpoint().withClients { rt, _ in
                        try await rt.podSandboxStatus(.with { $0.podSandboxID = pod.id }, options: global.callOptions())
                    }
                    let all = [status.status.network.ip] + status.status.network.additionalIps.map(\.ip)
                    ips[pod.id] = all.filter { !$0.isEmpty }.joined(separator: ",")
                }
            }
            try Render.emit(result, format: output == "wide" ? "table" : output) {
                let now = Int64(Date().timeIntervalSince1970 * 1e9)
                let wide = output == "wide"
                return Render.table(
                    ["POD ID", "CREATED", "STATE", "NAME", "NAMESPACE", "ATTEMPT", "RUNTIME"] + (wide ? ["IP"] : []),
                    result.items.map { p in
                        [
                            noTrunc ? p.id : String(p.id.prefix(13)), Render.age(sinceNs: p.createdAt, nowNs: now),
                            p.state == .sandboxReady ? "Ready" : "NotReady", p.metadata.name, p.metadata.namespace,
                            "\(p.metadata.attempt)", p.runtimeHandler.isEmpty ? "(default)" : p.runtimeHandler,
                        ] + (wide ? [ips[p.id].flatMap { $0.isEmpty ? nil : $0 } ?? "-"] : [])
                    })
            }
        }
    }
}

/// The parsed filters of `pods`: the server-side part (id, state, labels) and the client-side part
/// (name, namespace), as crictl splits them.
public struct PodsQuery: Equatable {
    public var request = Runtime_V1_ListPodSandboxRequest()
    public var name: String
    public var namespace: String

    public init(id: String = "", state: String = "", labels: [String] = [], name: String = "", namespace: String = "")
        throws
    {
        self.name = name
        self.namespace = namespace
        var filter = Runtime_V1_PodSandboxFilter()
        filter.id = id
        switch state.lowercased() {
        case "": break
        case "ready", "sandbox_ready":
            filter.state.state = .sandboxReady
        case "notready", "sandbox_notready":
            filter.state.state = .sandboxNotready
        default:
            throw ValidationError("--state must be ready or notready, not \"\(state)\"")
        }
        for pair in labels {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty else {
                throw ValidationError("--label \"\(pair)\" must be key=value")
            }
            filter.labelSelector[String(parts[0])] = String(parts[1])
        }
        if !id.isEmpty || !state.isEmpty || !labels.isEmpty { request.filter = filter }
    }

    public func matchesLocally(_ pod: Runtime_V1_PodSandbox) -> Bool {
        (name.isEmpty || pod.metadata.name.contains(name))
            && (namespace.isEmpty || pod.metadata.namespace.contains(namespace))
    }
}
