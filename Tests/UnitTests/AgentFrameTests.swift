import AgentAPI
import BootContract
import Foundation
import Testing

@Suite struct AgentFrameTests {
    @Test func roundTripsSplitAcrossChunks() throws {
        var envelope = Cocoon_Agent_V4_Envelope()
        envelope.id = 7
        envelope.request.health = Cocoon_Agent_V4_HealthRequest()
        var second = Cocoon_Agent_V4_Envelope()
        second.id = 8
        second.request.shutdown = Cocoon_Agent_V4_ShutdownRequest()
        let bytes = try AgentFrame.encode(envelope) + AgentFrame.encode(second)
        var decoder = AgentFrameDecoder()
        var got: [Cocoon_Agent_V4_Envelope] = []
        for b in bytes {
            decoder.append([b])
            while let e = try decoder.next() { got.append(e) }
        }
        #expect(got == [envelope, second])
    }

    @Test func refusesOversizedFrames() {
        var decoder = AgentFrameDecoder()
        decoder.append([0x7f, 0xff, 0xff, 0xff])
        #expect(throws: AgentFrame.DecodeError.frameTooLarge(0x7fff_ffff)) { try decoder.next() }
    }

    /// A guest that lost the frame boundary finds the next session's start behind any garbage, even
    /// with the marker split across reads, and keeps no more than a marker's worth meanwhile.
    @Test func skipsToTheSessionMarker() throws {
        var auth = Cocoon_Agent_V4_Envelope()
        auth.id = 1
        auth.request.authenticate.token = Data(repeating: 7, count: 32)
        let marker = AgentSession.marker
        var decoder = AgentFrameDecoder()
        decoder.append([UInt8](repeating: 0xab, count: 5000))
        let found = decoder.skip(past: marker)
        #expect(!found)
        #expect(decoder.buffered == marker.count - 1)
        // A frame length read from the marker is over the limit: a reader in frame mode stops there.
        decoder.reset()
        decoder.append(marker)
        #expect(throws: AgentFrame.DecodeError.self) { try decoder.next() }
        decoder.reset()
        let stream = [0, 0, 0, 9, 1, 2] + marker + (try AgentFrame.encode(auth))
        var got: [Cocoon_Agent_V4_Envelope] = []
        var synced = false
        for chunk in stride(from: 0, to: stream.count, by: 5).map({ stream[$0..<min($0 + 5, stream.count)] }) {
            decoder.append(chunk)
            if !synced { synced = decoder.skip(past: marker) }
            while synced, let e = try decoder.next() { got.append(e) }
        }
        #expect(got == [auth])
    }

    @Test func refusesGarbage() {
        var decoder = AgentFrameDecoder()
        decoder.append([0, 0, 0, 3, 0xff, 0xff, 0xff])
        #expect(throws: AgentFrame.DecodeError.self) { try decoder.next() }
    }
}

@Suite struct AgentFrameBufferTests {
    /// Many large frames read in uneven pieces through `fill` (as the agent reads its port): every
    /// frame comes out whole, across compactions and growth of the buffer.
    @Test func framesReadInPiecesThroughFill() throws {
        var sent: [Cocoon_Agent_V4_Envelope] = []
        var wire: [UInt8] = []
        for i in 0..<40 {
            var e = Cocoon_Agent_V4_Envelope()
            e.id = UInt64(i + 1)
            e.request.writePort = .with {
                $0.connectionID = UInt64(i)
                $0.data = Data((0..<(i * 5000 % 70000)).map { UInt8(truncatingIfNeeded: $0 * 7 + i) })
            }
            sent.append(e)
            wire += try AgentFrame.encode(e)
        }
        var decoder = AgentFrameDecoder()
        var got: [Cocoon_Agent_V4_Envelope] = []
        var offset = 0
        var piece = 1
        while offset < wire.count {
            let want = min(piece, wire.count - offset)
            let n = decoder.fill(atMost: 4096) { free in
                let take = min(want, free.count)
                wire.withUnsafeBytes {
                    free.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[offset..<(offset + take)]))
                }
                return take
            }
            offset += n
            piece = piece * 3 % 4093 + 1
            while let e = try decoder.next() { got.append(e) }
        }
        #expect(got == sent)
        #expect(decoder.buffered == 0)
    }

    @Test func fillAddsNothingOnEOFOrError() throws {
        var decoder = AgentFrameDecoder()
        #expect(decoder.fill(atMost: 100) { _ in 0 } == 0)
        #expect(decoder.fill(atMost: 100) { _ in -1 } == -1)
        #expect(decoder.buffered == 0)
    }
}

@Suite struct StreamFrameTests {
    private func viaProtobuf(_ header: StreamFrame.Header, _ payload: [UInt8]) throws -> [UInt8] {
        var event = Cocoon_Agent_V4_Event()
        switch header {
        case .portData(let id):
            event.portData = .with {
                $0.connectionID = id
                $0.data = Data(payload)
            }
        case .output(let c, let e, let stream):
            event.output = .with {
                $0.containerID = c
                $0.execID = e
                $0.stream = stream
                $0.data = Data(payload)
            }
        }
        var envelope = Cocoon_Agent_V4_Envelope()
        envelope.event = event
        return try AgentFrame.encode(envelope)
    }

    /// The in-place frame is byte for byte SwiftProtobuf's, across varint boundaries of ids and
    /// lengths, empty and maximal ids, and both streams.
    @Test func matchesTheProtobufEncoderByteForByte() throws {
        let long = String(repeating: "c", count: 128)
        let headers: [StreamFrame.Header] = [
            .portData(connectionID: 0), .portData(connectionID: 1), .portData(connectionID: 127),
            .portData(connectionID: 128), .portData(connectionID: UInt64.max),
            .output(containerID: "abc", execID: "", stream: .stdout),
            .output(containerID: long, execID: "s1f", stream: .stderr),
            .output(containerID: long, execID: long, stream: .stdout),
        ]
        for header in headers {
            for size in [1, 2, 100, 127, 128, 129, 16383, 16384, 65536] {
                let payload = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31) }
                let (frame, n) = StreamFrame.read(header, atMost: 65536) { free in
                    free.copyBytes(from: payload)
                    return payload.count
                }
                #expect(n == size)
                let built = try #require(frame)
                #expect(built.payloadCount == size)
                #expect(built.bytes == (try viaProtobuf(header, payload)), "\(header) \(size)")
                var decoder = AgentFrameDecoder()
                decoder.append(built.bytes)
                #expect(try decoder.next()?.event.kind != nil)
            }
        }
    }

    @Test func readsNothingIntoNoFrame() {
        #expect(StreamFrame.read(.portData(connectionID: 1), atMost: 10) { _ in 0 }.frame == nil)
        #expect(StreamFrame.read(.portData(connectionID: 1), atMost: 10) { _ in -1 }.result == -1)
        let tooLong = String(repeating: "x", count: 129)
        #expect(
            StreamFrame.read(.output(containerID: tooLong, execID: "", stream: .stdout), atMost: 10) { _ in 5 }.frame
                == nil)
    }
}

/// The guest agent takes vsock connections only from the host's privileged ports: a local user who
/// can open vsock sockets (any port >= 1024) or another guest (another CID) is refused.
@Suite struct VsockPeerTests {
    @Test func onlyTheHostsPrivilegedPortsAreAccepted() {
        #expect(VsockPeer.isHost(cid: 2, port: 1023))
        #expect(VsockPeer.isHost(cid: 2, port: 512))
        #expect(!VsockPeer.isHost(cid: 2, port: 1024), "what an unprivileged user gets")
        #expect(!VsockPeer.isHost(cid: 2, port: 40000))
        #expect(!VsockPeer.isHost(cid: 3, port: 1000), "another guest")
        #expect(!VsockPeer.isHost(cid: 1, port: 1000), "the guest's own loopback")
    }

    /// The protocol's own header names the API version the code speaks (a reader of the .proto
    /// alone must not be told an older one).
    @Test func theProtoHeaderStatesTheAPIVersionOfTheCode() throws {
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let proto = try String(contentsOf: repo.appendingPathComponent("Protos/agent/agent.proto"), encoding: .utf8)
        let header = proto.split(separator: "\n").prefix(2).joined(separator: " ")
        #expect(header.contains("API version \(agentAPIVersion) "), "\(header)")
    }
}
