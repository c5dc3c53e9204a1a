import NIOCore
import NIOWebSocket

extension WebSocketFrame {
    /// The payload as bytes, unmasked eight bytes at a time. NIO's `unmaskedData` goes a byte at a
    /// time, which at port-forward rates was a third of the daemon's CPU.
    var unmaskedBytes: [UInt8] {
        var bytes = Array(data.readableBytesView)
        if let maskKey { WebSocketUnmasking.apply(maskKey, to: &bytes) }
        return bytes
    }
}

/// RFC 6455 masking (byte i XOR key[i % 4]), a 64-bit word at a time.
enum WebSocketUnmasking {
    static func apply(_ key: WebSocketMaskingKey, to bytes: inout [UInt8]) {
        let k = Array(key)
        guard k.count == 4 else { return }
        let word = UInt64(k[0]) | UInt64(k[1]) << 8 | UInt64(k[2]) << 16 | UInt64(k[3]) << 24
        let wide = word | word << 32
        bytes.withUnsafeMutableBytes { raw in
            var i = 0
            while i + 8 <= raw.count {
                let v = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: i, as: UInt64.self))
                raw.storeBytes(of: (v ^ wide).littleEndian, toByteOffset: i, as: UInt64.self)
                i += 8
            }
            while i < raw.count {
                raw[i] ^= k[i % 4]
                i += 1
            }
        }
    }
}
