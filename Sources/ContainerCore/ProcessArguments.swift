/// How the kubelet's command/args combine with the image's Entrypoint/Cmd (the rule Docker and
/// every CRI runtime apply): a CRI `command` replaces the Entrypoint and drops the image Cmd;
/// CRI `args` replace the image Cmd.
public enum ProcessArguments {
    public static func merge(entrypoint: [String], cmd: [String], command: [String], args: [String])
        throws(ContainerCoreError) -> [String]
    {
        let result: [String]
        if !command.isEmpty {
            result = command + args
        } else {
            result = entrypoint + (args.isEmpty ? cmd : args)
        }
        guard let first = result.first, !first.isEmpty else {
            throw .invalidSpec(
                "no command: neither the container config (command/args) nor the image (Entrypoint/Cmd) names a "
                    + "process to run"
            )
        }
        return result
    }

    /// Container env over image env: same variable name, the container wins; order kept.
    public static func mergeEnvironment(image: [String], container: [String]) -> [String] {
        var result: [String] = []
        var index: [Substring: Int] = [:]
        for entry in image + container {
            let name = entry.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)[0]
            if let i = index[name] {
                result[i] = entry
            } else {
                index[name] = result.count
                result.append(entry)
            }
        }
        return result
    }
}
