import Errors
import Synchronization

/// The start of a session's process, held back for a terminal session until the client's first
/// terminal size arrives (kubectl and crictl send it right after opening their streams) or
/// `patience` has passed, so that the command's terminal has the client's size from its first
/// instruction (`tty; stty size` in a fresh exec). Owns that first size and hands the started
/// process (nil when it could not start) to the session's read loop.
final class SizedStart: Sendable {
    private struct State {
        var sizeDecided = false
        var size: TerminalSize?
        var sizeWaiter: CheckedContinuation<TerminalSize?, Never>?
        var settled = false
        var abandoned = false
        var process: (any StreamedProcess)?
        var processWaiters: [CheckedContinuation<(any StreamedProcess)?, Never>] = []
    }
    private let state = Mutex(State())
    let patience: Duration

    /// How long a terminal session waits for the client's first size before its process starts
    /// without one. kubectl and crictl send it right after opening their streams (kubectl turns the
    /// terminal off when its input is not one), so a terminal session without a size is rare, while
    /// on a loaded node the first size was seen to come more than a second after the streams (a
    /// `stty size` in the exec then found no size): 5 s.
    static let defaultPatience = Duration.seconds(5)

    init(patience: Duration = SizedStart.defaultPatience) {
        self.patience = patience
    }

    /// A session whose process runs already (no terminal, or nothing to wait for).
    convenience init(started process: any StreamedProcess) {
        self.init(patience: .zero)
        state.withLock {
            $0.sizeDecided = true
            $0.settled = true
            $0.process = process
        }
    }

    /// A size from the client: true when it is the one the terminal starts with; false when the
    /// start has been decided already (the caller resizes the running process instead).
    func offer(_ size: TerminalSize) -> Bool {
        let (taken, waiter) = state.withLock { s -> (Bool, CheckedContinuation<TerminalSize?, Never>?) in
            guard !s.sizeDecided else { return (false, nil) }
            s.sizeDecided = true
            s.size = size
            defer { s.sizeWaiter = nil }
            return (true, s.sizeWaiter)
        }
        waiter?.resume(returning: size)
        return taken
    }

    /// The client's first size, or nil once `patience` has passed without one.
    func firstSize() async -> TerminalSize? {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { [patience] in
                try? await Task.sleep(for: patience)  // try?: cancelled means decided already
                self.expire()
            }
            let size = await withCheckedContinuation { (waiter: CheckedContinuation<TerminalSize?, Never>) in
                let decided = state.withLock { s -> TerminalSize?? in
                    if s.sizeDecided { return .some(s.size) }
                    s.sizeWaiter = waiter
                    return .none
                }
                if let decided { waiter.resume(returning: decided) }
            }
            group.cancelAll()
            return size
        }
    }

    private func expire() {
        let waiter = state.withLock { s -> CheckedContinuation<TerminalSize?, Never>? in
            guard !s.sizeDecided else { return nil }
            s.sizeDecided = true
            defer { s.sizeWaiter = nil }
            return s.sizeWaiter
        }
        waiter?.resume(returning: nil)
    }

    /// The session is over: a start that has not begun never will (`shouldStart` says so), and the
    /// wait for a size ends. The caller ends `process()`, which a start under way still delivers.
    func abandon() {
        state.withLock { $0.abandoned = true }
        expire()
    }

    /// True once the start is over (the process runs, or it failed): input need not wait for it.
    var hasSettled: Bool { state.withLock { $0.settled } }

    /// False once the session was abandoned: the starter settles with nil instead of starting.
    var shouldStart: Bool { state.withLock { !$0.abandoned } }

    /// Ends the session's process, whenever its start settles (a session that ended while its
    /// process was starting must not leave it running), and keeps any later start from happening.
    func end() async {
        abandon()
        await process()?.end()
    }

    /// The start is over: the process, or nil when it failed.
    func settle(_ process: (any StreamedProcess)?) {
        let waiters = state.withLock { s -> [CheckedContinuation<(any StreamedProcess)?, Never>] in
            guard !s.settled else { return [] }
            s.settled = true
            s.process = process
            defer { s.processWaiters = [] }
            return s.processWaiters
        }
        for waiter in waiters { waiter.resume(returning: process) }
    }

    /// The session's process once the start is over (nil when it failed).
    func process() async -> (any StreamedProcess)? {
        await withCheckedContinuation { (waiter: CheckedContinuation<(any StreamedProcess)?, Never>) in
            let settled = state.withLock { s -> (any StreamedProcess)?? in
                if s.settled { return .some(s.process) }
                s.processWaiters.append(waiter)
                return .none
            }
            if let settled { waiter.resume(returning: settled) }
        }
    }

    /// Starts `request`'s process once the first size is in (or `patience` has passed), unless the
    /// session was abandoned meanwhile, and settles: the process, the error that kept it from
    /// starting, or nil for an abandoned session.
    func start(_ request: StreamingRequest, on runtime: any StreamingRuntime) async -> Result<
        any StreamedProcess, CocoonError
    >? {
        let size = await firstSize()
        guard shouldStart else {
            settle(nil)
            return nil
        }
        do {
            let process = try await request.start(on: runtime, size: size)
            settle(process)
            return .success(process)
        } catch {
            settle(nil)
            return .failure(error)
        }
    }
}
