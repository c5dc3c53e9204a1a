/// Why pod networking failed. Plugin failures carry the plugin's own error JSON message.
public enum CNIError: Error, CustomStringConvertible, Equatable {
    /// No usable configuration in the config directory (the node's network is not ready).
    case noConfig(String)
    /// A configuration file that cannot be used.
    case config(String)
    /// A plugin ran and failed: its `msg` (and `details`) or its output.
    case plugin(String)
    /// Setting up the pod's namespace, tap or tc failed.
    case wiring(String)

    public var description: String {
        switch self {
        case .noConfig(let m), .config(let m), .plugin(let m), .wiring(let m): m
        }
    }
}
