import CRIAPI
import Containers
import Errors
import GRPCCore
import Models
import Streaming

extension RuntimeService {
    /// Checks a streaming exec (the container runs, a command and at least one stream, no stderr
    /// with a tty) and returns the single-use URL where the client runs it.
    public func exec(request: Runtime_V1_ExecRequest, context: ServerContext) async throws -> Runtime_V1_ExecResponse {
        try await mapErrors {
            guard !request.containerID.isEmpty else { throw CocoonError.invalidArgument("container_id is required") }
            guard !request.cmd.isEmpty, !request.cmd[0].isEmpty else {
                throw CocoonError.invalidArgument("cmd must not be empty")
            }
            try Self.checkStreams(
                stdin: request.stdin, stdout: request.stdout, stderr: request.stderr, tty: request.tty)
            let server = try streamingServer()
            let (record, _) = try await containers.runningContainer(request.containerID)
            let exec = ExecRequest(
                containerID: record.id, command: request.cmd, stdin: request.stdin, tty: request.tty)
            var response = Runtime_V1_ExecResponse()
            response.url = try server.url(for: .exec(exec, stdout: request.stdout, stderr: request.stderr))
            return response
        }
    }

    /// The kubelet's rules for the streams of an exec or attach.
    static func checkStreams(stdin: Bool, stdout: Bool, stderr: Bool, tty: Bool) throws(CocoonError) {
        guard stdin || stdout || stderr else {
            throw .invalidArgument("one of stdin, stdout, or stderr must be set")
        }
        guard !(tty && stderr) else { throw .invalidArgument("tty and stderr cannot both be true") }
    }

    func streamingServer() throws(CocoonError) -> StreamingServer {
        guard let streaming else { throw .unavailable("the streaming server is not running") }
        return streaming
    }
}
