import AgentClient
import Config
import Crypto
import Foundation
import Hypervisor

/// What a handler's template depends on: its guest files and QEMU (by size, modification time and
/// inode: a replaced or rewritten file changes it), its VM size, accelerator, kernel arguments and
/// the agent protocol. A template whose key is not the current one is rebuilt.
enum TemplateKey {
    /// Bumped when what a template is changes (its devices, its layout on disk).
    static let format = 1

    static func inputs(_ handler: RuntimeHandler, qemu: String) -> [String] {
        [
            "format=\(format)", "agent_api=\(hostAgentAPIVersion)", "qemu=\(identity(qemu))",
            "kernel=\(identity(handler.kernel))", "initrd=\(identity(handler.initrd))",
            "agent_image=\(identity(handler.agentImage))", "vcpus=\(handler.vcpus)", "memory_mib=\(handler.memoryMiB)",
            "accel=\(handler.accel.rawValue)", "kernel_args=\(handler.kernelArgs)",
        ]
    }

    static func key(_ inputs: [String]) -> String {
        SHA256.hash(data: Data(inputs.joined(separator: "\n").utf8)).prefix(16).map { String(format: "%02x", $0) }
            .joined()
    }

    /// `path:size:mtime_ns:inode`, or `path:missing`.
    private static func identity(_ path: String) -> String {
        var st = stat()
        guard stat(path, &st) == 0 else { return path + ":missing" }
        let mtime = Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)
        return "\(path):\(st.st_size):\(mtime):\(st.st_ino)"
    }
}
