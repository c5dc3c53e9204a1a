import Foundation

/// vsock needs the host's vhost-vsock device; each VM gets a context id derived from its id.
enum VsockSupport {
    static var available: Bool { access("/dev/vhost-vsock", R_OK | W_OK) == 0 }

    /// A context id in [3, 2^31) derived from the sandbox id (FNV-1a), stable across restarts.
    static func cid(for id: String) -> UInt32 {
        var h: UInt32 = 2_166_136_261
        for b in id.utf8 { h = (h ^ UInt32(b)) &* 16_777_619 }
        return 3 + h % 0x7FFF_FFF0
    }
}
