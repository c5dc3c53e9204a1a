/// A process's system call filter: none, Cocoon's RuntimeDefault, or an OCI/Docker-format JSON
/// profile (CRI `Localhost`). Compiled with libseccomp into a BPF program before the process starts.
public enum SeccompProfile: Sendable, Equatable, Codable {
    case unconfined
    case runtimeDefault
    case json(String)
}
