import AgentAPI
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

    @Test func refusesGarbage() {
        var decoder = AgentFrameDecoder()
        decoder.append([0, 0, 0, 3, 0xff, 0xff, 0xff])
        #expect(throws: AgentFrame.DecodeError.self) { try decoder.next() }
    }
}
