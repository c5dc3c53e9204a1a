import AgentAPI
import Foundation
import Hypervisor

/// A host process that is not cocoond, opening a pod VM's agent channel (its virtio-serial socket)
/// and speaking the agent protocol as an attacker would: what the guest answers is kept.
struct AgentIntruder {
    let fd: Int32

    init(socket path: String) throws {
        fd = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0, UnixSocketAddress.connect(fd, path: path) else {
            close(fd)
            throw HarnessError("cannot connect to the agent socket \(path)")
        }
        // As a host does: the session marker, behind which the guest looks for a first frame.
        let marker = AgentSession.marker
        _ = marker.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    func send(_ envelope: Cocoon_Agent_V4_Envelope) throws {
        let bytes = try AgentFrame.encode(envelope)
        let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard n == bytes.count else { throw HarnessError("the agent socket took \(n) of \(bytes.count) bytes") }
    }

    /// Every frame the guest sends within `seconds` (reading stops early at EOF).
    func frames(within seconds: Double) -> [Cocoon_Agent_V4_Envelope] {
        var decoder = AgentFrameDecoder()
        var out: [Cocoon_Agent_V4_Envelope] = []
        let deadline = Date().addingTimeInterval(seconds)
        var buffer = [UInt8](repeating: 0, count: 65536)
        while Date() < deadline {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 100) >= 0 else { break }
            guard p.revents != 0 else { continue }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            decoder.append(buffer[0..<n])
            while let envelope = try? decoder.next() { out.append(envelope) }
        }
        return out
    }

    func end() { close(fd) }

    static func request(_ id: UInt64, _ fill: (inout Cocoon_Agent_V4_Request) -> Void) -> Cocoon_Agent_V4_Envelope {
        var envelope = Cocoon_Agent_V4_Envelope()
        envelope.id = id
        var request = Cocoon_Agent_V4_Request()
        fill(&request)
        envelope.request = request
        return envelope
    }
}
