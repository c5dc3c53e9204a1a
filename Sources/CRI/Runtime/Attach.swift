import CRIAPI
import Errors
import GRPCCore
import Streaming

extension RuntimeService {
    /// Checks an attach (the container runs; stdin only when it was created with stdin) and returns
    /// the single-use URL where the client attaches.
    public func attach(request: Runtime_V1_AttachRequest, context: ServerContext) async throws
        -> Runtime_V1_AttachResponse
    {
        try await mapErrors {
            guard !request.containerID.isEmpty else { throw CocoonError.invalidArgument("container_id is required") }
            try Self.checkStreams(
                stdin: request.stdin, stdout: request.stdout, stderr: request.stderr, tty: request.tty)
            let server = try streamingServer()
            let (record, _) = try await containers.runningContainer(request.containerID)
            if request.stdin && record.stdio?.stdin != true {
                throw CocoonError.invalidArgument("container \(record.id) was not created with stdin")
            }
            var response = Runtime_V1_AttachResponse()
            response.url = try server.url(
                for: .attach(
                    containerID: record.id, stdin: request.stdin, stdout: request.stdout, stderr: request.stderr,
                    tty: record.stdio?.tty ?? false))
            return response
        }
    }
}
