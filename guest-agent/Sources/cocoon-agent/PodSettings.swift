import AgentService
import ContainerCore
import Glibc

/// What the agent sets for the whole pod: the pod's sysctls (the guest's network and IPC namespaces
/// are the pod's, so they are written once, here) and the limits of all its containers together.
enum PodSettings {
    /// The parent cgroup of every container of the pod.
    static var cgroupRoot: String { HostMode.current?.cgroupRoot ?? "/sys/fs/cgroup/cocoon" }

    /// Writes each sysctl under /proc/sys; a key the guest kernel does not have is INVALID_ARGUMENT.
    static func apply(sysctls: [String: String]) throws(AgentFailure) {
        for (key, value) in sysctls.sorted(by: { $0.key < $1.key }) {
            let relative = key.contains("/") ? key : String(key.map { $0 == "." ? "/" : $0 })
            let parts = relative.split(separator: "/", omittingEmptySubsequences: false)
            guard !key.isEmpty, key.utf8.count <= 256,
                !parts.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }),
                value.utf8.count <= 4096, !value.contains("\0")
            else {
                throw .invalid("sysctl \"\(key)\" is not a valid key=value")
            }
            if let host = HostMode.current, host.netns == nil, relative.hasPrefix("net/") {
                throw .invalid("sysctl \(key): a pod on the node's network cannot set the node's network sysctls")
            }
            let fd = open("/proc/sys/" + relative, O_WRONLY | O_CLOEXEC)
            guard fd >= 0 else {
                let error = SystemError("open")
                throw error.code == ENOENT
                    ? .invalid("sysctl \(key) does not exist in the guest kernel")
                    : .internal("sysctl \(key): \(error)")
            }
            defer { close(fd) }
            let written = value.withCString { write(fd, $0, strlen($0)) }
            guard written >= 0 else { throw .invalid("sysctl \(key)=\(value): \(SystemError("write"))") }
        }
    }

    /// Limits the pod's containers together (memory, CPU, pids), in their common parent cgroup.
    static func apply(podResources: Resources) throws(AgentFailure) {
        do {
            _ = try Cgroup.create(cgroupRoot, resources: podResources)
        } catch {
            throw .internal("pod resources: \(error)")
        }
    }
}
