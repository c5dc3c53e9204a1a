import CContainerCore
import Glibc

/// The PID namespace a pod's containers share (CRI's namespace mode POD, Kubernetes'
/// `shareProcessNamespace`): held by a pause program as its PID 1, which reaps the orphans the
/// kernel hands it. Started on first use by the agent that owns the pod's containers; the
/// containers are then born in it (`ContainerSpec.pidNamespaceOf`).
public enum PodPIDNamespace {
    /// The pause program's name, looked up beside the running agent.
    public static let pauseProgram = "cocoon-pause"

    /// `cocoon-pause` beside this process's executable, or nil when it is not there.
    public static func pauseBinary(besideExecutable exe: String = "/proc/self/exe") -> String? {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink(exe, &buffer, buffer.count - 1)
        guard n > 0 else { return nil }
        let path = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard let slash = path.lastIndex(of: "/") else { return nil }
        let candidate = String(path[..<slash]) + "/" + pauseProgram
        return access(candidate, X_OK) == 0 ? candidate : nil
    }

    /// Starts the pause program as PID 1 of a new PID namespace; returns its pid (a child of the caller).
    public static func start(pause path: String) throws(ContainerCoreError) -> Int32 {
        let pid = ccore_spawn_pid_init(path)
        guard pid > 0 else { throw .errno("start \(path) in a new PID namespace") }
        return pid
    }
}
