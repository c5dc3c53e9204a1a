import ContainerLogs
import Errors

/// The containers' CRI logs after the kubelet rotated one (ReopenContainerLog). The daemon writes a
/// VM's containers' logs; a native pod's agent writes its own containers' (it follows the path by
/// itself), and the new file is made here at once, as containerd does on a reopen.
extension ContainerManager {
    public func reopenLog(_ idOrPrefix: String) throws(CocoonError) {
        let id = try resolve(idOrPrefix)
        guard let record = records[id] else { throw .notFound("container \"\(idOrPrefix)\" not found") }
        guard record.state == .running else { throw .failedPrecondition("container \(id) is not running") }
        if record.agentWritesLog == true {
            if !record.logPath.isEmpty { CRILogWriter.create(record.logPath) }
        } else {
            logs[id]?.reopen()
        }
    }
}
