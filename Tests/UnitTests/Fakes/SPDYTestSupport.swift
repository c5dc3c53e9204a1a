@testable import Streaming

/// Every whole frame `decoder` finds after `bytes` arrive.
func decodeFrames(_ bytes: [UInt8], _ decoder: SPDYFrameDecoder) throws -> [SPDYFrame] {
    decoder.append(bytes)
    var frames: [SPDYFrame] = []
    while let f = try decoder.next() { frames.append(f) }
    return frames
}
