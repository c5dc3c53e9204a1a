import Models

extension Capability {
    /// CRI semantics: start from the default set, add then drop; "ALL" in either list means every capability.
    public static func resolve(add: [String], drop: [String], base: Set<Capability> = defaultSet)
        throws(ContainerCoreError) -> Set<Capability>
    {
        var result = base
        for name in add {
            if name.uppercased() == "ALL" {
                result = all
                continue
            }
            guard let cap = Capability(name: name) else {
                throw .invalidSpec("capabilities.add_capabilities: unknown capability \"\(name)\"")
            }
            result.insert(cap)
        }
        for name in drop {
            if name.uppercased() == "ALL" {
                result = []
                continue
            }
            guard let cap = Capability(name: name) else {
                throw .invalidSpec("capabilities.drop_capabilities: unknown capability \"\(name)\"")
            }
            result.remove(cap)
        }
        return result
    }
}
