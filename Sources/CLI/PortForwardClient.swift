import Foundation
import NIOCore
import NIOPosix
import NIOWebSocket

/// `cocoonctl port-forward`: listens on local ports; each connection gets its own PortForward URL
/// and session, relayed both ways until either side closes: WebSocket (`v4.channel.k8s.io`: channel
/// 0 data, channel 1 errors, each opened by the port number) or SPDY (`PortForwardOverSPDYClient`).
enum PortForwardClient {
    struct Mapping: Sendable, Equatable {
        var local: UInt16
        var remote: UInt16

        /// `LOCAL:REMOTE`, or `PORT` for the same number on both sides.
        init?(_ text: String) {
            let parts = text.split(separator: ":", omittingEmptySubsequences: false).map { UInt16($0) }
            switch parts.count {
            case 1:
                guard let p = parts[0], p > 0 else { return nil }
                (local, remote) = (p, p)
            case 2:
                guard let l = parts[0], let r = parts[1], r > 0 else { return nil }
                (local, remote) = (l, r)
            default: return nil
            }
        }
    }

    /// Serves until cancelled; `url` asks the runtime for a fresh URL for a remote port.
    static func run(
        _ mappings: [Mapping], transport: StreamingTransport, url: @escaping @Sendable (UInt16) async throws -> String
    ) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for mapping in mappings {
                let listener = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                    .childChannelOption(.allowRemoteHalfClosure, value: true)  // a client's EOF is not the end
                    .bind(host: "127.0.0.1", port: Int(mapping.local)) { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                        }
                    }
                let port = listener.channel.localAddress?.port ?? Int(mapping.local)
                FileHandle.standardOutput.write(Data("Forwarding from 127.0.0.1:\(port) -> \(mapping.remote)\n".utf8))
                group.addTask {
                    try await withThrowingDiscardingTaskGroup { connections in
                        try await listener.executeThenClose { inbound in
                            for try await connection in inbound {
                                connections.addTask {
                                    do {
                                        let session = try await url(mapping.remote)
                                        switch transport {
                                        case .websocket:
                                            try await relay(connection, remote: mapping.remote, url: session)
                                        case .spdy:
                                            try await PortForwardOverSPDYClient.relay(
                                                connection, remote: mapping.remote, url: session)
                                        }
                                    } catch {
                                        FileHandle.standardError.write(
                                            Data("port-forward \(mapping.remote): \(error)\n".utf8))
                                    }
                                }
                            }
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
    }

    private static func relay(_ local: NIOAsyncChannel<ByteBuffer, ByteBuffer>, remote: UInt16, url: String)
        async throws
    {
        let session = try await StreamingClient.connect(url, subprotocol: "v4.channel.k8s.io")
        try await local.executeThenClose { localIn, localOut in
            try await session.executeThenClose { wsIn, wsOut in
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        for try await buffer in localIn {
                            try await wsOut.write(StreamingClient.frame(channel: 0, buffer.readableBytesView))
                        }
                        // No more from the local side: close our data channel (the v5 close signal);
                        // the pod's answer still comes, until the server ends the session.
                        try await wsOut.write(StreamingClient.frame(channel: 255, [0]))
                    }
                    var prefixSeen: Set<UInt8> = []
                    receive: for try await frame in wsIn {
                        switch frame.opcode {
                        case .binary:
                            var data = frame.unmaskedData
                            guard let channel: UInt8 = data.readInteger() else { continue }
                            if !prefixSeen.contains(channel) {
                                prefixSeen.insert(channel)  // the port number opens each channel
                                data.moveReaderIndex(forwardBy: min(2, data.readableBytes))
                            }
                            guard data.readableBytes > 0 else { continue }
                            if channel == 0 {
                                try await localOut.write(data)
                            } else {
                                FileHandle.standardError.write(Data(("error: " + String(buffer: data) + "\n").utf8))
                            }
                        case .ping:
                            try await wsOut.write(StreamingClient.pong(frame))
                        case .connectionClose:
                            break receive
                        default:
                            continue
                        }
                    }
                    group.cancelAll()
                }
            }
        }
    }
}
