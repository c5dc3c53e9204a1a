import Errors
import Models

/// What a streaming URL stands for, as the CRI call that issued it checked it: stored under the
/// URL's token until the client connects.
public enum StreamingRequest: Sendable, Equatable {
    case exec(ExecRequest, stdout: Bool, stderr: Bool)
    case attach(containerID: String, stdin: Bool, stdout: Bool, stderr: Bool, tty: Bool)
    case portForward(podID: String, ports: [UInt16])

    var kind: StreamingUpgrade.Kind {
        switch self {
        case .exec: .exec
        case .attach: .attach
        case .portForward: .portforward
        }
    }

    /// The streams a remote-command client opens for this request (error, stdin, stdout, stderr, resize).
    var streams: (stdin: Bool, stdout: Bool, stderr: Bool, tty: Bool) {
        switch self {
        case .exec(let e, let stdout, let stderr): (e.stdin, stdout, stderr && !e.tty, e.tty)
        case .attach(_, let stdin, let stdout, let stderr, let tty): (stdin, stdout, stderr && !tty, tty)
        case .portForward: (false, false, false, false)
        }
    }

    /// Starts the exec or attaches; `size` is the client's terminal size when it sent one first: an
    /// exec's terminal has it before the command runs, an attached container's terminal is resized.
    func start(on runtime: any StreamingRuntime, size: TerminalSize?) async throws(CocoonError)
        -> any StreamedProcess
    {
        switch self {
        case .exec(var exec, _, _):
            if let size { exec.size = (size.width, size.height) }
            return try await runtime.openExec(exec)
        case .attach(let id, let stdin, _, _, _):
            let process = try await runtime.attach(id, stdin: stdin)
            if let size { await process.resize(width: size.width, height: size.height) }
            return process
        case .portForward: throw .internalError("not a remote command")
        }
    }
}
