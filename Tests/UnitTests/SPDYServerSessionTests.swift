import Testing

@testable import Streaming

/// The server side of a SPDY session, driven by a client built from the same framing.
@Suite struct SPDYServerSessionTests {
    /// Frames a client would send, in one compression context.
    final class Client {
        let encoder: SPDYFrameEncoder
        let decoder: SPDYFrameDecoder
        init() throws {
            encoder = try SPDYFrameEncoder()
            decoder = try SPDYFrameDecoder()
        }
        func open(_ id: UInt32, _ type: String, fin: Bool = false) throws -> [UInt8] {
            try encoder.encode(
                .synStream(
                    streamID: id, associatedTo: 0, priority: 0, flags: fin ? .fin : [],
                    headers: SPDYHeaders([("streamtype", type)])))
        }
        func read(_ bytes: [UInt8]) throws -> [SPDYFrame] { try decodeFrames(bytes, decoder) }
    }

    @Test func anExecSessionFromOpenToClose() throws {
        let server = try SPDYServerSession()
        let client = try Client()
        // error and stdout streams, stdin with data and FIN in the same read.
        var wire = try client.open(1, "error") + client.open(3, "stdout") + client.open(5, "stdin")
        wire += try client.encoder.encode(.data(streamID: 5, flags: .fin, payload: Array("echo hi\n".utf8)))
        let (events, reply) = try server.receive(wire)
        #expect(reply.isEmpty)
        #expect(events.count == 5)
        #expect(events[0] == .streamOpened(id: 1, headers: SPDYHeaders([("streamtype", "error")])))
        #expect(events[3] == .data(id: 5, Array("echo hi\n".utf8)) && events[4] == .remoteClosed(id: 5))

        var out = try server.accept(1) + server.accept(3) + server.accept(5)
        out += try server.send(3, [UInt8](repeating: 0x61, count: 70_000), fin: true)
        out += try server.send(1, Array(#"{"status":"Success"}"#.utf8), fin: true)
        let frames = try client.read(out)
        #expect(frames.prefix(3).allSatisfy { if case .synReply = $0 { true } else { false } })
        let stdout = frames.compactMap { f -> [UInt8]? in
            if case .data(3, _, let p) = f { return p }
            return nil
        }
        #expect(stdout.count == 3 && stdout.map(\.count).reduce(0, +) == 70_000, "cut into 32 KiB frames")
        guard case .data(3, let flags, _)? = frames.dropLast().last else {
            Issue.record("stdout does not end before the status: \(frames.suffix(2))")
            return
        }
        #expect(flags == .fin)
        // Each stream is half-closed: by us (error, stdout) or by the client (stdin).
        #expect(server.openStreams == [1, 3, 5])
        #expect(throws: SPDYServerSession.UsageError.self) { _ = try server.send(3, [1]) }
        // The client closes its side of error and stdout, we close stdin: nothing is left.
        let fins =
            try client.encoder.encode(.data(streamID: 1, flags: .fin, payload: []))
            + client.encoder.encode(.data(streamID: 3, flags: .fin, payload: []))
        #expect(try server.receive(fins).events == [.remoteClosed(id: 1), .remoteClosed(id: 3)])
        _ = try server.send(5, [], fin: true)
        #expect(server.openStreams.isEmpty)
    }

    @Test func theClientCannotMisuseStreams() throws {
        let server = try SPDYServerSession(maxStreams: 2)
        let client = try Client()
        _ = try server.receive(try client.open(1, "error") + client.open(3, "stdout"))
        // A third stream is refused; data on unknown or closed streams gets a reset, not a crash.
        let (events, reply) = try server.receive(
            try client.open(5, "stdin") + client.encoder.encode(.data(streamID: 9, flags: [], payload: [1]))
                + client.encoder.encode(.ping(id: 7)) + client.encoder.encode(.ping(id: 2)))
        #expect(events.isEmpty)
        #expect(
            try client.read(reply) == [
                .rstStream(streamID: 5, status: .refusedStream), .rstStream(streamID: 9, status: .invalidStream),
                .ping(id: 7),
            ])
        // A client reset ends the stream; GOAWAY ends the session.
        let (later, _) = try server.receive(
            try client.encoder.encode(.rstStream(streamID: 3, status: .cancel))
                + client.encoder.encode(.goAway(lastGoodStreamID: 0, status: .ok)))
        #expect(later == [.streamReset(id: 3), .sessionEnded])
        #expect(server.openStreams == [1])
        // Stream ids going backwards break the session.
        #expect(throws: SPDYProtocolError.self) { _ = try server.receive(try client.open(3, "stdin")) }
    }

    /// moby/spdystream never sends windows: nothing is held back, however much goes.
    @Test func withoutTheClientsWindowsNothingIsHeld() throws {
        let server = try SPDYServerSession()
        let client = try Client()
        _ = try server.receive(try client.open(1, "stdout"))
        _ = try server.accept(1)
        _ = try server.send(1, [UInt8](repeating: 1, count: 200_000))
        #expect(!server.flowControlled && server.window(1) == Int.max)
    }

    /// A SPDY/3.1 client (SETTINGS INITIAL_WINDOW_SIZE, then WINDOW_UPDATEs): the server sends no more
    /// than the stream's and the session's windows, and opens the client's as it takes its data.
    @Test func aFlowControllingClientsWindowsAreHonoured() throws {
        let server = try SPDYServerSession()
        let client = try Client()
        let settings = try client.encoder.encode(
            .settings(clearPrevious: false, entries: [SPDYSetting(id: SPDYSetting.initialWindowSizeID, value: 1000)]))
        let (events, _) = try server.receive(settings + client.open(1, "stdout") + client.open(3, "stdin"))
        #expect(events.contains(.windowOpened(id: 0)) && server.flowControlled)
        _ = try server.accept(1)
        _ = try server.accept(3)
        #expect(server.window(1) == 1000)
        _ = try server.send(1, [UInt8](repeating: 1, count: 1000))
        #expect(server.window(1) == 0)
        // The stream's window opens by 500; the session's (64 KiB less 1000) is larger.
        let update = try client.encoder.encode(.windowUpdate(streamID: 1, delta: 500))
        #expect(try server.receive(update).events == [.windowOpened(id: 1)])
        #expect(server.window(1) == 500)
        // A window update for a stream that does not exist changes nothing.
        #expect(try server.receive(try client.encoder.encode(.windowUpdate(streamID: 9, delta: 5))).events.isEmpty)
        // Data from the client reopens its windows (stream and session) once it has been used.
        let stdin = try client.encoder.encode(.data(streamID: 3, flags: [], payload: [UInt8](repeating: 2, count: 300)))
        let (got, reply) = try server.receive(stdin)
        #expect(got == [.data(id: 3, [UInt8](repeating: 2, count: 300))] && reply.isEmpty)
        #expect(
            try client.read(server.consumed(3, 300)) == [
                .windowUpdate(streamID: 3, delta: 300), .windowUpdate(streamID: 0, delta: 300),
            ])
        // The session window bounds every stream together.
        _ = try server.send(1, [UInt8](repeating: 1, count: 500))
        let bigStream = try client.encoder.encode(.windowUpdate(streamID: 1, delta: 1 << 20))
        _ = try server.receive(bigStream)
        #expect(server.window(1) == SPDYServerSession.defaultWindow - 1500)
    }

    /// A client that claims flow control but sends past the window we gave it ends the session:
    /// what waits for the process is bounded by that window.
    @Test func aClientOverrunningItsWindowEndsTheSession() throws {
        let server = try SPDYServerSession()
        let client = try Client()
        let settings = try client.encoder.encode(
            .settings(clearPrevious: false, entries: [SPDYSetting(id: SPDYSetting.initialWindowSizeID, value: 1 << 20)])
        )
        let (_, reply) = try server.receive(settings + client.open(1, "stdin"))
        // Our own SETTINGS tells the client it must keep to our 64 KiB windows.
        #expect(
            try client.read(reply) == [
                .settings(
                    clearPrevious: false, entries: [SPDYSetting(id: SPDYSetting.initialWindowSizeID, value: 65536)])
            ])
        let chunk = try client.encoder.encode(
            .data(streamID: 1, flags: [], payload: [UInt8](repeating: 0, count: 40_000)))
        _ = try server.receive(chunk)
        #expect(throws: SPDYProtocolError.self) { _ = try server.receive(chunk) }
    }
}
