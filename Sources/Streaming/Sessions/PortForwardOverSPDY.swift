import Errors
import Logging
import NIOCore

/// Port-forward over SPDY, as the kubelet's server does it: for each connection the client opens a
/// pair of streams (`streamType` error and data) with the same `requestID` and a `port`; the server
/// dials the port inside the pod and relays the data stream both ways. A failed dial is reported on
/// that pair's error stream; the session and its other connections go on.
struct PortForwardOverSPDY {
    let podID: String
    let runtime: any StreamingRuntime
    let logger: Logger
    /// Touched by every byte either way; the server ends the session when it has been idle too long.
    let activity: IdleWatch

    private struct Pair {
        var port: UInt16
        var error: UInt32?
        var data: UInt32?
        var connection: (any StreamedPort)?
        /// A flow-controlled client's data for the connection.
        var pump: ClientInputPump?
    }

    func serve(_ channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>) async throws {
        let connection = try SPDYConnection(activity: activity)
        let open = HeldSession<[any StreamedPort]>()
        try await channel.executeThenClose { inbound, outbound in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    // try?: a client gone mid-write ends the session like any other end
                    try? await connection.writer.run(outbound)
                    outbound.finish()
                }
                do {
                    try await readLoop(inbound, connection: connection, open: open, group: &group)
                } catch {
                    logger.debug("port-forward session ended", metadata: ["error": "\(error)"])
                }
                for c in open.value ?? [] { await c.end() }
                await connection.finish()
            }
        }
    }

    /// Reads the client until it leaves, routing each stream's events to its connection's pair.
    private func readLoop(
        _ inbound: NIOAsyncChannelInboundStream<ByteBuffer>, connection: SPDYConnection,
        open: HeldSession<[any StreamedPort]>, group: inout ThrowingTaskGroup<Void, any Error>
    ) async throws {
        var pairs: [String: Pair] = [:]
        var byStream: [UInt32: String] = [:]
        defer { for pair in pairs.values { pair.pump?.cancel() } }
        for try await buffer in inbound {
            guard let events = await connection.receive(buffer, logger: logger) else { return }
            for event in events {
                switch event {
                case .streamOpened(let id, let headers):
                    await streamOpened(
                        id, headers, pairs: &pairs, byStream: &byStream, connection: connection, open: open,
                        group: &group)
                case .data(let id, let bytes):
                    await forward(
                        bytes, from: id, pairs: &pairs, byStream: byStream, connection: connection, group: &group)
                case .remoteClosed(let id):
                    guard let key = byStream[id], let pair = pairs[key], id == pair.data else { continue }
                    if let pump = pair.pump { pump.end() } else { await pair.connection?.closeWrite() }
                case .streamReset(let id):
                    guard let key = byStream[id], let pair = pairs[key] else { continue }
                    pair.pump?.cancel()
                    await pair.connection?.end()
                    pairs[key] = nil
                case .windowOpened:
                    break  // SPDYConnection's
                case .sessionEnded:
                    return
                }
            }
        }
    }

    /// Accepts a stream the client opened into its pair (resetting one without a valid type and
    /// port), and dials the port once the pair has both streams; a failed dial ends the pair.
    private func streamOpened(
        _ id: UInt32, _ headers: SPDYHeaders, pairs: inout [String: Pair], byStream: inout [UInt32: String],
        connection: SPDYConnection, open: HeldSession<[any StreamedPort]>,
        group: inout ThrowingTaskGroup<Void, any Error>
    ) async {
        guard let type = headers["streamtype"], type == "error" || type == "data",
            let port = headers["port"].flatMap({ UInt16($0) }), port > 0
        else {
            await connection.reset(id)
            return
        }
        let key = headers["requestid"] ?? "port-\(port)"
        var pair = pairs[key] ?? Pair(port: port)
        if type == "error" { pair.error = id } else { pair.data = id }
        byStream[id] = key
        await connection.accept(id)
        if let errorStream = pair.error, let dataStream = pair.data, pair.connection == nil {
            do {
                let dialed = try await runtime.dial(pod: podID, port: port)
                pair.connection = dialed
                open.value = (open.value ?? []) + [dialed]
                group.addTask {
                    await relay(dialed, data: dataStream, error: errorStream, connection: connection)
                }
            } catch {
                let text = "error forwarding port \(port) to pod \(podID), uid : \(error.message)"
                await connection.send(errorStream, Array(text.utf8), fin: true)
                await connection.send(dataStream, [], fin: true)
                pairs[key] = nil
                return
            }
        }
        pairs[key] = pair
    }

    /// The client's bytes on a pair's data stream to its connection: through a `ClientInputPump` for
    /// a flow-controlled client, else at once; bytes for no connection are only consumed.
    private func forward(
        _ bytes: [UInt8], from id: UInt32, pairs: inout [String: Pair], byStream: [UInt32: String],
        connection: SPDYConnection, group: inout ThrowingTaskGroup<Void, any Error>
    ) async {
        guard let key = byStream[id], var pair = pairs[key], id == pair.data, let c = pair.connection
        else {
            await connection.consumed(id, bytes.count)
            return
        }
        if await connection.flowControlled {
            if pair.pump == nil {
                pair.pump = ClientInputPump(
                    stream: id, connection: connection, group: &group,
                    write: { bytes in
                        do {
                            try await c.write(bytes)
                            return true
                        } catch {
                            await c.end()
                            return false
                        }
                    },
                    close: { await c.closeWrite() })
                pairs[key] = pair
            }
            pair.pump?.send(bytes)
            return
        }
        do {
            try await c.write(bytes)
        } catch {
            await c.end()
        }
        await connection.consumed(id, bytes.count)
    }

    /// The pod's side of one connection to the client's data stream; its failure to the error stream.
    private func relay(_ c: any StreamedPort, data: UInt32, error: UInt32, connection: SPDYConnection) async {
        for await event in c.events {
            switch event {
            case .data(let bytes):
                await connection.send(data, bytes) { c.delivered(bytes.count) }
            case .closed(let message):
                if !message.isEmpty {
                    await connection.send(error, Array("error forwarding port to pod \(podID): \(message)".utf8))
                }
            }
        }
        // The pod's side is done; the client's may still send (TCP half-close): the connection is
        // dropped when the client closes its stream too, resets it, or the session ends.
        await connection.send(data, [], fin: true)
        await connection.send(error, [], fin: true)
    }
}
