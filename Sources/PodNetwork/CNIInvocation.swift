import Foundation
import Spawn

/// What libcni calls `RuntimeConf`: the pod a plugin call is about.
public struct CNIRuntimeConf: Sendable, Equatable, Codable {
    public var containerID: String
    public var netns: String
    public var ifName: String
    /// CNI_ARGS pairs, in order (K8S_POD_NAMESPACE, K8S_POD_NAME, ...).
    public var args: [[String]]
    /// Capability arguments by name (`portMappings`, `bandwidth`, `dns`): passed in `runtimeConfig`
    /// to the plugins that declare the capability.
    public var capabilityArgs: [String: JSONValue]

    public init(
        containerID: String, netns: String, ifName: String, args: [[String]], capabilityArgs: [String: JSONValue]
    ) {
        self.containerID = containerID
        self.netns = netns
        self.ifName = ifName
        self.args = args
        self.capabilityArgs = capabilityArgs
    }

    /// "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;..." as libcni sends it.
    public var cniArgs: String {
        (["IgnoreUnknown=1"] + args.filter { $0.count == 2 }.map { "\($0[0])=\($0[1])" }).joined(separator: ";")
    }
}

/// How one CNI plugin is executed, per the CNI spec: the environment and the stdin configuration
/// (pure functions, unit-tested), and the run itself with a deadline.
public struct CNIPluginRunner: Sendable {
    public var binDirs: [String]
    public var timeout: Duration

    public init(binDirs: [String], timeout: Duration) {
        self.binDirs = binDirs
        self.timeout = timeout
    }

    public enum Command: String, Sendable { case add = "ADD", del = "DEL", check = "CHECK" }

    /// The plugin's environment: the CNI variables and a PATH for the tools plugins call (iptables).
    public func environment(_ command: Command, _ rt: CNIRuntimeConf) -> [String] {
        [
            "CNI_COMMAND=\(command.rawValue)", "CNI_CONTAINERID=\(rt.containerID)", "CNI_NETNS=\(rt.netns)",
            "CNI_IFNAME=\(rt.ifName)", "CNI_ARGS=\(rt.cniArgs)", "CNI_PATH=\(binDirs.joined(separator: ":"))",
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ]
    }

    /// What the plugin reads on stdin: its own configuration with the list's `name` and `cniVersion`,
    /// the previous plugin's result, and `runtimeConfig` with the capabilities it declares.
    public static func stdinConfig(
        _ list: CNINetworkList, plugin index: Int, prevResult: JSONValue?, rt: CNIRuntimeConf
    ) -> JSONValue {
        var conf = list.plugins[index].object ?? [:]
        conf["name"] = .string(list.name)
        conf["cniVersion"] = .string(list.cniVersion)
        if let prevResult { conf["prevResult"] = prevResult }
        var runtime: [String: JSONValue] = [:]
        for capability in list.capabilities(index) {
            if let value = rt.capabilityArgs[capability] { runtime[capability] = value }
        }
        if !runtime.isEmpty { conf["runtimeConfig"] = .object(runtime) }
        return .object(conf)
    }

    /// The plugin's executable in the first bin dir that has it.
    public func find(_ type: String) throws(CNIError) -> String {
        for dir in binDirs where access(dir + "/" + type, X_OK) == 0 { return dir + "/" + type }
        throw .plugin("CNI plugin \"\(type)\" not found in \(binDirs.joined(separator: ", "))")
    }

    /// Runs one plugin (off the cooperative pool); stdout on success, else the plugin's error.
    public func run(_ command: Command, type: String, config: JSONValue, rt: CNIRuntimeConf) async throws(CNIError)
        -> Data
    {
        let binary = try find(type)
        let env = environment(command, rt)
        let input = [UInt8](config.encoded())
        let timeout = self.timeout
        let outcome: Result<HostProcess.Captured, Error> = await OffPool.run {
            Result {
                try HostProcess.execute(
                    [binary], environment: env, input: input, separateErrors: true, timeout: timeout)
            }
        }
        let done: HostProcess.Captured
        switch outcome {
        case .success(let d): done = d
        case .failure(let error): throw .plugin("CNI plugin \(type) (\(command.rawValue)) could not run: \(error)")
        }
        guard done.status == 0 else {
            throw .plugin(Self.failure(type: type, command: command, done: done, timeout: timeout))
        }
        return Data(done.output)
    }

    /// The message of a failed plugin call: the `msg` and `details` of its error JSON, else its output.
    static func failure(type: String, command: Command, done: HostProcess.Captured, timeout: Duration) -> String {
        let prefix = "CNI plugin \(type) failed (\(command.rawValue))"
        if done.status == 128 + SIGKILL { return "\(prefix): no answer within \(timeout)" }
        if let error = JSONValue.parse(Data(done.output)), let msg = error["msg"]?.string {
            let details = error["details"]?.string.map { "; \($0)" } ?? ""
            return "\(prefix): \(msg)\(details)"
        }
        let text = String(decoding: (done.output + done.errors).prefix(600), as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        return "\(prefix): exit status \(done.status)\(text.isEmpty ? "" : ": \(text)")"
    }
}
