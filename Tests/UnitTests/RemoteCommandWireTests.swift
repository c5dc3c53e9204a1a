import Foundation
import NIOCore
import NIOWebSocket
import Testing

@testable import Streaming

/// What exec/attach/port-forward clients read and send besides the SPDY frames: the status on the
/// error stream, terminal sizes, WebSocket channel messages, and protocol negotiation.
@Suite struct RemoteCommandWireTests {
    func json(_ bytes: [UInt8]) throws -> NSDictionary {
        try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? NSDictionary)
    }

    /// The documents the kubelet's server writes (Go's encoding/json), compared as JSON values.
    @Test func statusDocumentsMatchTheKubelets() throws {
        let success = RemoteCommandStatus.success.encoded(for: .v4)
        #expect(try json(success) == json(Array(#"{"metadata":{},"status":"Success"}"#.utf8)))
        let exit7 = RemoteCommandStatus.exitCode(7, command: ["sh", "-c", "exit 7"]).encoded(for: .v4)
        let kubelet =
            #"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: "#
            + #"error executing command [sh -c exit 7], exit code 7","reason":"NonZeroExitCode","#
            + #""details":{"causes":[{"reason":"ExitCode","message":"7"}]}}"#
        #expect(try json(exit7) == json(Array(kubelet.utf8)))
        #expect(try json(RemoteCommandStatus.failure("boom").encoded(for: .v5))["code"] as? Int == 500)
        // Before v4: nothing on success, the message as text otherwise.
        #expect(RemoteCommandStatus.success.encoded(for: .v2).isEmpty)
        #expect(String(decoding: RemoteCommandStatus.failure("boom").encoded(for: .v1), as: UTF8.self) == "boom")
    }

    @Test func terminalSizesArriveOnePerLineAndGarbageIsSkipped() {
        var carry: [UInt8] = []
        #expect(TerminalSize.parse(Array(#"{"Width":80,"Hei"#.utf8), carry: &carry).isEmpty)
        let sizes = TerminalSize.parse(
            Array("ght\":24}\nnot json\n{\"Width\":132,\"Height\":43}\n".utf8), carry: &carry)
        #expect(sizes == [TerminalSize(width: 80, height: 24), TerminalSize(width: 132, height: 43)])
        _ = TerminalSize.parse([UInt8](repeating: 0x41, count: 1000), carry: &carry)
        #expect(carry.isEmpty, "an endless line is dropped, not kept")
    }

    @Test func aWholeSizeWithoutNewlineIsASize() {
        var carry: [UInt8] = []
        #expect(
            TerminalSize.parse(Array(#"{"Width":99,"Height":33}"#.utf8), carry: &carry) == [
                .init(width: 99, height: 33)
            ])
        #expect(carry.isEmpty)
    }

    @Test func channelMessagesInBinaryAndBase64() {
        #expect(
            WebSocketChannels.encode(.data(channel: 1, Array("hi".utf8)), protocol: .v4) == (false, [1, 0x68, 0x69]))
        #expect(
            WebSocketChannels.encode(.data(channel: 1, Array("hi".utf8)), protocol: .v4Base64) == (
                true, Array("1aGk=".utf8)
            ))
        #expect(
            WebSocketChannels.decode(Array("0aGk=".utf8), protocol: .v1Base64) == .data(channel: 0, Array("hi".utf8)))
        #expect(WebSocketChannels.decode([0, 0x78], protocol: .v5) == .data(channel: 0, [0x78]))
        #expect(WebSocketChannels.decode([255, 0], protocol: .v5) == .close(channel: 0))
        #expect(
            WebSocketChannels.decode([255, 0], protocol: .v4) == .data(channel: 255, [0]), "no close signal before v5")
        #expect(WebSocketChannels.decode([], protocol: .v5) == nil)
        #expect(WebSocketChannels.decode(Array("1!!".utf8), protocol: .v4Base64) == nil, "bad base64 is dropped")
        #expect(WebSocketChannels.portPrefix(8080) == [0x90, 0x1f])
    }

    @Test func protocolsAreNegotiatedInTheClientsOrder() {
        let spdy = StreamProtocol.spdyRemoteCommand
        // crictl and kubectl offer v5 first over SPDY; the kubelet's server answers v4.
        #expect(StreamProtocol.negotiate(offered: ["v5.channel.k8s.io", "v4.channel.k8s.io"], supported: spdy) == .v4)
        #expect(StreamProtocol.negotiate(offered: ["channel.k8s.io, v2.channel.k8s.io"], supported: spdy) == .v1)
        #expect(StreamProtocol.negotiate(offered: ["v9.channel.k8s.io"], supported: spdy) == nil)
        #expect(
            StreamProtocol.negotiate(offered: ["v5.channel.k8s.io"], supported: StreamProtocol.webSocketRemoteCommand)
                == .v5)
        #expect(StreamProtocol.v3.supportsResize && !StreamProtocol.v2.supportsResize)
        #expect(StreamProtocol.v4.reportsJSONStatus && !StreamProtocol.v3.reportsJSONStatus)
    }
}

@Suite struct WebSocketUnmaskingTests {
    /// Word-wise unmasking gives NIO's byte-wise result for every length around the word size.
    @Test func matchesNIOsUnmaskingForEveryLength() throws {
        let key = try #require(WebSocketMaskingKey([0x9a, 0x3c, 0x01, 0xfe]))
        for count in [0, 1, 3, 4, 7, 8, 9, 15, 16, 17, 100, 65536 + 5] {
            let payload = (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ 7) }
            var masked = ByteBuffer(bytes: payload)
            masked.webSocketMask(key)
            let frame = WebSocketFrame(fin: true, opcode: .binary, maskKey: key, data: masked)
            #expect(frame.unmaskedBytes == Array(frame.unmaskedData.readableBytesView), "\(count)")
            #expect(frame.unmaskedBytes == payload, "\(count)")
        }
        let plain = WebSocketFrame(fin: true, opcode: .binary, data: ByteBuffer(bytes: [1, 2, 3]))
        #expect(plain.unmaskedBytes == [1, 2, 3])
    }
}
