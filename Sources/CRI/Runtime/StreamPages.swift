import GRPCCore

/// The list-streaming calls send what their List call returns, in pages, so no single message grows
/// past the kubelet's receive limit however many pods a node runs. An empty list is one empty page.
enum StreamPages {
    static let size = 100

    static func send<Item, Message: Sendable>(
        _ items: [Item], to writer: RPCWriter<Message>, page make: ([Item]) -> Message
    ) async throws {
        var start = 0
        repeat {
            let end = min(start + size, items.count)
            try await writer.write(make(Array(items[start..<end])))
            start = end
        } while start < items.count
    }
}
