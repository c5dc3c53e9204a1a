import BootContract
import Errors
import Foundation
import Persistence

/// Owns each pod VM's agent token on the host: 32 random bytes made at RunPodSandbox, kept in the
/// sandbox's state directory as a 0600 file (QEMU hands it to the guest through fw_cfg; a restarted
/// daemon reads it to reconnect). Only root can read it; it never appears on a command line.
enum AgentTokenFile {
    static func path(inStateDir dir: String) -> String { dir + "/agent.token" }

    /// A fresh random token, written (atomically, 0600) to `path`.
    static func create(at path: String) throws(CocoonError) -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        let token = (0..<BootContract.agentTokenBytes).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        do {
            try FileManager.default.createDirectory(
                atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try AtomicFile.write(Data(token), to: path)
        } catch {
            throw .internalError("cannot write the VM's agent token \(path): \(error)", cause: error)
        }
        return token
    }

    /// The token of a VM, read without following a symlink and only if it has the token's size.
    static func read(_ path: String) throws(CocoonError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else {
            throw .unavailable("the VM's agent token \(path) cannot be opened: \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var token = [UInt8](repeating: 0, count: BootContract.agentTokenBytes + 1)
        let n = token.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        guard n == BootContract.agentTokenBytes else {
            throw .unavailable("the VM's agent token \(path) is damaged (\(n) bytes)")
        }
        return Array(token.prefix(n))
    }
}
