import NIOCore
import Streaming
import Synchronization

/// An exec or attach session over SPDY/3.1 (`v4.channel.k8s.io`), as kubectl and crictl run it:
/// after the upgrade the client opens one stream per `streamType` (error, stdin, stdout, stderr,
/// resize), writes stdin and sizes on theirs, and reads output until the server ends the session.
///
/// Flow control: the client announces SPDY/3.1 windows (SETTINGS INITIAL_WINDOW_SIZE) and opens the
/// server's window as it writes each output chunk to its terminal, so a slow terminal slows the
/// server rather than filling memory. Its own stdin obeys the server's windows when the server's first
/// frame is its SETTINGS (cocoond's); servers built on moby/spdystream (the kubelet's, containerd's)
/// answer with a SYN_REPLY first, keep no windows and are not waited for.
enum RemoteCommandOverSPDYClient {
    /// The window this client gives each of the server's streams.
    static let receiveWindow: UInt32 = 1 << 20

    /// Runs the session; returns the bytes of the error stream (the v4 status).
    static func run(
        url: String, stdin: Bool, tty: Bool, input: @escaping @Sendable (RemoteCommandInput) async throws -> Void,
        output: @escaping @Sendable (Int32, [UInt8]) -> Void
    ) async throws -> [UInt8] {
        let (channel, target) = try await StreamingClient.connectSPDY(url)
        return try await channel.executeThenClose { inbound, outbound in
            var iterator = inbound.makeAsyncIterator()
            let leftover = try await StreamingClient.upgradeSPDY(
                target, protocolVersion: "v4.channel.k8s.io", &iterator, outbound)
            let wire = try SPDYClientWire(outbound)
            var ids = StreamIDs()
            var opening: [(UInt32, String)] = [(ids.error, "error")]
            if stdin { opening.append((ids.stdin, "stdin")) }
            opening.append((ids.stdout, "stdout"))
            if !tty { opening.append((ids.stderr, "stderr")) }
            if tty { opening.append((ids.resize, "resize")) }
            try await wire.start(opening, receiveOnly: [ids.error, ids.stdout, ids.stderr])
            if !tty { ids.resize = 0 }
            let streams = ids
            return try await withThrowingTaskGroup(of: Void.self) { group -> [UInt8] in
                group.addTask {
                    try await input(
                        RemoteCommandInput(
                            stdin: { try await wire.send(streams.stdin, $0) },
                            closeStdin: { try await wire.send(streams.stdin, [], fin: true) },
                            resize: { try await wire.send(streams.resize, RemoteCommandClient.resizeMessage($0, $1)) }
                        ))
                }
                var status: [UInt8] = []
                var closedByServer: Set<UInt32> = []
                try await SPDYClientWire.readFrames(leftover, &iterator, wire) { frame in
                    switch frame {
                    case .data(let id, let flags, let payload):
                        if id == streams.stdout || id == streams.stderr {
                            output(id == streams.stdout ? 1 : 2, payload)
                            try await wire.consumed(id, payload.count)
                        } else if id == streams.error {
                            status += payload
                        }
                        if flags.contains(.fin) { closedByServer.insert(id) }
                    case .rstStream(let id, _):
                        closedByServer.insert(id)
                    case .synReply(let id, let flags, _):
                        if flags.contains(.fin) { closedByServer.insert(id) }
                    default:
                        break
                    }
                    // The result has come and every stream the server writes on is closed: done.
                    return !closedByServer.isSuperset(of: [streams.error, streams.stdout])
                }
                group.cancelAll()
                return status
            }
        }
    }

    /// The client's stream ids, odd and increasing in the order client-go opens them.
    struct StreamIDs {
        var error: UInt32 = 1
        var stdin: UInt32 = 3
        var stdout: UInt32 = 5
        var stderr: UInt32 = 7
        var resize: UInt32 = 9
    }
}

/// The sending side of the client's SPDY session: frames are encoded and written in one order
/// (header compression depends on it), and stdin waits for the server's windows when it keeps them.
actor SPDYClientWire {
    private let encoder: SPDYFrameEncoder
    private let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    let windows = SPDYSendWindows()

    init(_ outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>) throws {
        encoder = try SPDYFrameEncoder()
        self.outbound = outbound
    }

    /// SETTINGS with our window, then a SYN_STREAM per stream; streams we only read get FIN at once
    /// (we send nothing on them), as client-go's do.
    func start(_ streams: [(UInt32, String)], receiveOnly: Set<UInt32>) async throws {
        try await start(streams.map { ($0.0, SPDYHeaders([("streamType", $0.1)])) }, receiveOnly: receiveOnly)
    }

    /// As `start(_:receiveOnly:)`, with each stream's own headers.
    func start(_ streams: [(UInt32, SPDYHeaders)], receiveOnly: Set<UInt32>) async throws {
        try await write(
            .settings(
                clearPrevious: false,
                entries: [
                    SPDYSetting(id: SPDYSetting.initialWindowSizeID, value: RemoteCommandOverSPDYClient.receiveWindow)
                ]))
        for (id, headers) in streams {
            try await write(
                .synStream(
                    streamID: id, associatedTo: 0, priority: 0, flags: receiveOnly.contains(id) ? .fin : [],
                    headers: headers))
        }
    }

    /// Data on one of our streams, in pieces the server's windows allow.
    func send(_ id: UInt32, _ data: [UInt8], fin: Bool = false) async throws {
        var offset = 0
        repeat {
            let room = try await windows.take(id, upTo: min(data.count - offset, 32 << 10))
            let end = offset + room
            let last = fin && end == data.count
            try await write(.data(streamID: id, flags: last ? .fin : [], payload: Array(data[offset..<end])))
            offset = end
        } while offset < data.count
    }

    /// Reads the server's frames after the upgrade (`leftover` first): counts its windows, answers
    /// its pings and refuses streams it opens; every other frame goes to `handle`, until `handle`
    /// returns false, the server sends GOAWAY or the connection ends.
    static func readFrames(
        _ leftover: [UInt8], _ iterator: inout NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator,
        _ wire: SPDYClientWire, _ handle: (SPDYFrame) async throws -> Bool
    ) async throws {
        let decoder = try SPDYFrameDecoder(maxPayload: 1 << 24)
        var pending = leftover
        while true {
            decoder.append(pending)
            while let frame = try decoder.next() {
                wire.windows.serverSent(frame)
                switch frame {
                case .ping(let id):
                    try await wire.write(.ping(id: id))
                case .synStream(let id, _, _, _, _):
                    try await wire.write(.rstStream(streamID: id, status: .refusedStream))
                case .goAway:
                    return
                case .windowUpdate, .settings, .headers:
                    continue  // windows: counted above
                default:
                    if try await !handle(frame) { return }
                }
            }
            guard let buffer = try await iterator.next() else { return }
            pending = Array(buffer.readableBytesView)
        }
    }

    /// We wrote `count` bytes of the server's data: it may send that much more.
    func consumed(_ id: UInt32, _ count: Int) async throws {
        guard count > 0 else { return }
        try await write(.windowUpdate(streamID: id, delta: UInt32(count)))
        try await write(.windowUpdate(streamID: 0, delta: UInt32(count)))
    }

    func write(_ frame: SPDYFrame) async throws {
        try await outbound.write(ByteBuffer(bytes: try encoder.encode(frame)))
    }
}

/// The server's windows for what this client sends. Whether the server keeps them is known from its
/// first frame (SETTINGS: it does); until then sending waits. A cancelled wait ends.
final class SPDYSendWindows: Sendable {
    private enum Mode { case undecided, enforced, unlimited }
    private struct State {
        var mode = Mode.undecided
        var initial = SPDYServerSession.defaultWindow
        var session = SPDYServerSession.defaultWindow
        var streams: [UInt32: Int] = [:]
        var waiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
        var nextWaiter: UInt64 = 0

        func room(_ id: UInt32) -> Int {
            switch mode {
            case .undecided: 0
            case .unlimited: Int.max
            case .enforced: min(session, streams[id] ?? initial)
            }
        }

        /// Takes up to `wanted` bytes of the windows; nil when they are closed.
        mutating func take(_ id: UInt32, _ wanted: Int) -> Int? {
            let n = min(wanted, room(id))
            guard n > 0 else { return nil }
            session -= n
            streams[id, default: initial] -= n
            return n
        }

        mutating func wake() -> [CheckedContinuation<Void, Never>] {
            defer { waiters = [:] }
            return Array(waiters.values)
        }
    }
    private let state = Mutex(State())

    /// Up to `wanted` bytes may go on stream `id` now; waits while the windows are closed.
    func take(_ id: UInt32, upTo wanted: Int) async throws -> Int {
        guard wanted > 0 else { return 0 }
        while true {
            try Task.checkCancellation()
            if let n = state.withLock({ $0.take(id, wanted) }) { return n }
            let key = state.withLock { s in
                s.nextWaiter += 1
                return s.nextWaiter
            }
            await withTaskCancellationHandler {
                await withCheckedContinuation { continuation in
                    let now = state.withLock { s -> Bool in
                        guard !Task.isCancelled, s.room(id) <= 0 else { return true }
                        s.waiters[key] = continuation
                        return false
                    }
                    if now { continuation.resume() }
                }
            } onCancel: {
                state.withLock { $0.waiters.removeValue(forKey: key) }?.resume()
            }
        }
    }

    /// Every frame from the server: the first decides whether windows are kept; SETTINGS and
    /// WINDOW_UPDATE move them.
    func serverSent(_ frame: SPDYFrame) {
        let woken = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            switch frame {
            case .settings(_, let entries):
                if s.mode == .undecided { s.mode = .enforced }
                if let size = entries.last(where: { $0.id == SPDYSetting.initialWindowSizeID }) {
                    let value = Int(min(size.value, UInt32(Int32.max)))
                    for id in s.streams.keys { s.streams[id]? += value - s.initial }
                    s.initial = value
                }
            case .windowUpdate(let id, let delta):
                let delta = Int(delta & 0x7fff_ffff)
                if id == 0 {
                    s.session += delta
                } else {
                    s.streams[id, default: s.initial] += delta
                }
            default:
                if s.mode == .undecided { s.mode = .unlimited }
            }
            return s.wake()
        }
        for waiter in woken { waiter.resume() }
    }
}
