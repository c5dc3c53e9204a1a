import ArgumentParser
import CRIAPI
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2

/// `cocoonctl exec --sync ID CMD...`: runs a command and prints its output; exits with its code.
struct ExecContainer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "exec", abstract: "Run a command in a running container (streaming, or --sync).")
    @OptionGroup var global: GlobalOptions
    @Flag(name: .shortAndLong, help: "Pass stdin to the command.") var interactive = false
    @Flag(name: .shortAndLong, help: "Run the command on a terminal (this one in raw mode).") var tty = false
    @OptionGroup var stream: StreamOptions
    @Flag(help: "Run synchronously (ExecSync): collect the output, then print it.") var sync = false
    @Option(help: "Seconds before the command is killed (0: no limit; --sync only).") var syncTimeout: Int64 = 0
    @Argument(help: "Container ID (or unique prefix).") var id: String
    @Argument(parsing: .captureForPassthrough, help: "The command and its arguments.") var command: [String] = []

    func validate() throws {
        if command.isEmpty { throw ValidationError("give the command to run") }
        if sync && (interactive || tty) { throw ValidationError("--sync takes no stdin and no terminal") }
    }

    func run() async throws {
        var code: Int32 = 0
        try await runCLI {
            if sync {
                let response = try await global.endpoint().withClients { rt, _ in
                    try await rt.execSync(
                        .with {
                            $0.containerID = id
                            $0.cmd = command
                            $0.timeout = syncTimeout
                        }, options: global.callOptions())
                }
                FileHandle.standardOutput.write(response.stdout)
                FileHandle.standardError.write(response.stderr)
                code = response.exitCode
                return
            }
            code = try await stream.run(global, stdin: interactive, tty: tty) { rt, options in
                try await rt.exec(
                    .with {
                        $0.containerID = id
                        $0.cmd = command
                        $0.stdin = interactive
                        $0.tty = tty
                        $0.stdout = true
                        $0.stderr = !tty
                    }, options: options
                ).url
            }
        }
        if code != 0 { throw ExitCode(code) }
    }
}

/// How exec and attach reach the streaming server.
struct StreamOptions: ParsableArguments {
    @Option(help: "Streaming transport: spdy (v4.channel.k8s.io, as kubectl) or websocket (v5.channel.k8s.io).")
    var transport: StreamingTransport = .spdy

    /// Asks the runtime for the URL, then runs the session on this terminal; the exit code.
    func run(
        _ global: GlobalOptions, stdin: Bool, tty: Bool,
        url: (Runtime_V1_RuntimeService.Client<HTTP2ClientTransport.Posix>, CallOptions) async throws -> String
    ) async throws -> Int32 {
        try await RemoteCommandClient.run(global, transport: transport, stdin: stdin, tty: tty, url: url)
    }
}

/// `cocoonctl attach [-i] [-t] ID`: the container's own process, from now on.
struct AttachContainer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "attach", abstract: "Attach to a running container's process (its output, and stdin with -i).")
    @OptionGroup var global: GlobalOptions
    @Flag(name: .shortAndLong, help: "Pass stdin to the process (it must have been created with stdin).")
    var interactive = false
    @Flag(name: .shortAndLong, help: "The container has a terminal: put this one in raw mode.") var tty = false
    @OptionGroup var stream: StreamOptions
    @Argument(help: "Container ID (or unique prefix).") var id: String

    func run() async throws {
        var code: Int32 = 0
        try await runCLI {
            code = try await stream.run(global, stdin: interactive, tty: tty) { rt, options in
                try await rt.attach(
                    .with {
                        $0.containerID = id
                        $0.stdin = interactive
                        $0.tty = tty
                        $0.stdout = true
                        $0.stderr = !tty
                    }, options: options
                ).url
            }
        }
        if code != 0 { throw ExitCode(code) }
    }
}

/// `cocoonctl port-forward POD LOCAL:REMOTE...`: local TCP ports to ports inside the pod.
struct PortForwardPod: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "port-forward", abstract: "Forward local ports to ports inside a pod (LOCAL:REMOTE, 0 picks one).")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Pod sandbox ID (or unique prefix).") var pod: String
    @Argument(help: "Port mappings: LOCAL:REMOTE or PORT.") var ports: [String]
    @Option(help: "Streaming transport: websocket (portforward.k8s.io channels) or spdy (as kubectl).")
    var transport: StreamingTransport = .websocket

    func validate() throws {
        for p in ports where PortForwardClient.Mapping(p) == nil {
            throw ValidationError("\"\(p)\" is not LOCAL:REMOTE or PORT (1-65535)")
        }
    }

    func run() async throws {
        let mappings = ports.compactMap(PortForwardClient.Mapping.init)
        let endpoint = try global.endpoint()
        let options = global.callOptions()
        let pod = self.pod
        try await runCLI {
            try await PortForwardClient.run(mappings, transport: transport) { remote in
                try await endpoint.withClients { rt, _ in
                    try await rt.portForward(
                        .with {
                            $0.podSandboxID = pod
                            $0.port = [Int32(remote)]
                        }, options: options
                    ).url
                }
            }
        }
    }
}
