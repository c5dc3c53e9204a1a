import Foundation
import NIOCore
import Streaming

/// One forwarded connection over SPDY/3.1 (`portforward.k8s.io`), as kubectl runs it: the client
/// opens an error stream and a data stream with the same `port` and `requestID`, relays the local
/// connection on the data stream, and reports what arrives on the error stream. It keeps SPDY
/// windows as `RemoteCommandOverSPDYClient` does: the server's data opens its window only once the
/// local side has taken it.
enum PortForwardOverSPDYClient {
    static let errorStream: UInt32 = 1
    static let dataStream: UInt32 = 3

    static func relay(_ local: NIOAsyncChannel<ByteBuffer, ByteBuffer>, remote: UInt16, url: String) async throws {
        let (channel, target) = try await StreamingClient.connectSPDY(url)
        try await channel.executeThenClose { inbound, outbound in
            var iterator = inbound.makeAsyncIterator()
            let leftover = try await StreamingClient.upgradeSPDY(
                target, protocolVersion: "portforward.k8s.io", &iterator, outbound)
            let wire = try SPDYClientWire(outbound)
            let headers = { (type: String) in
                SPDYHeaders([("streamType", type), ("port", "\(remote)"), ("requestID", "0")])
            }
            try await wire.start(
                [(errorStream, headers("error")), (dataStream, headers("data"))], receiveOnly: [errorStream])
            try await local.executeThenClose { localIn, localOut in
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        for try await buffer in localIn {
                            try await wire.send(dataStream, Array(buffer.readableBytesView))
                        }
                        try await wire.send(dataStream, [], fin: true)  // the local side's EOF
                    }
                    try await SPDYClientWire.readFrames(leftover, &iterator, wire) { frame in
                        switch frame {
                        case .data(let id, let flags, let payload):
                            if id == dataStream, !payload.isEmpty {
                                try await localOut.write(ByteBuffer(bytes: payload))
                                try await wire.consumed(id, payload.count)
                            } else if id == errorStream, !payload.isEmpty {
                                FileHandle.standardError.write(Data("error: ".utf8 + payload + [0x0a]))
                            }
                            return !(id == dataStream && flags.contains(.fin))
                        case .rstStream(let id, _):
                            return id != dataStream
                        default:
                            return true
                        }
                    }
                    group.cancelAll()
                }
            }
        }
    }
}
