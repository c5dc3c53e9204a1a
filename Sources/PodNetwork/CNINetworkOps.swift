import Foundation

/// libcni's network-list operations: ADD runs each plugin in order with the previous result and
/// caches the final one; DEL runs them in reverse with the cached configuration and result; CHECK
/// (CNI >= 0.4.0) asks each plugin whether the pod's network is still as ADD left it.
public struct CNINetworkOps: Sendable {
    public let runner: CNIPluginRunner
    public let cache: CNICache

    public init(runner: CNIPluginRunner, cache: CNICache) {
        self.runner = runner
        self.cache = cache
    }

    /// Runs ADD through the list. On a failure the plugins already run are undone (DEL) and the
    /// first plugin error is what is thrown.
    public func add(_ list: CNINetworkList, _ rt: CNIRuntimeConf) async throws(CNIError) -> CNIResult {
        var entry = CNICacheEntry(
            containerId: rt.containerID, ifName: rt.ifName, networkName: list.name, cniVersion: list.cniVersion,
            plugins: list.plugins, source: list.source, cniArgs: rt.args, capabilityArgs: rt.capabilityArgs,
            result: nil)
        // Cached before the first plugin runs: a crash mid-ADD still leaves DEL what it needs.
        try cache.save(entry)
        var previous: CNIResult?
        for index in list.plugins.indices {
            let type = list.pluginType(index)
            let config = CNIPluginRunner.stdinConfig(list, plugin: index, prevResult: previous?.raw, rt: rt)
            do {
                let output = try await runner.run(.add, type: type, config: config, rt: rt)
                previous = try CNIResult.parse(output, plugin: type)
            } catch {
                entry.result = previous?.raw
                try? cache.save(entry)  // try?: the DEL below reads it; a failed save leaves the earlier one
                try? await del(network: list.name, rt)  // try?: the ADD error is the one to report
                throw error
            }
        }
        guard let result = previous else { throw .config("\(list.source): no plugins") }
        entry.result = result.raw
        try cache.save(entry)
        return result
    }

    /// Runs DEL through the cached list in reverse (the given list when nothing is cached) and drops
    /// the cache. Succeeds when there is nothing to delete.
    public func del(network: String, _ rt: CNIRuntimeConf, fallback: CNINetworkList? = nil) async throws(CNIError) {
        let cached = cache.load(network: network, containerID: rt.containerID, ifName: rt.ifName)
        guard let list = cached?.list ?? fallback else { return }
        var rt = rt
        if let cached {
            rt.capabilityArgs = cached.capabilityArgs
            rt.args = cached.cniArgs
        }
        let prev = list.cniVersion.hasPrefix("0.3") ? nil : cached?.result
        for index in list.plugins.indices.reversed() {
            let config = CNIPluginRunner.stdinConfig(list, plugin: index, prevResult: prev, rt: rt)
            _ = try await runner.run(.del, type: list.pluginType(index), config: config, rt: rt)
        }
        cache.remove(network: network, containerID: rt.containerID, ifName: rt.ifName)
    }

    /// Runs CHECK through the cached list (nothing to check before CNI 0.4.0 or without a cache).
    public func check(network: String, _ rt: CNIRuntimeConf) async throws(CNIError) {
        guard let cached = cache.load(network: network, containerID: rt.containerID, ifName: rt.ifName),
            let result = cached.result, !cached.cniVersion.hasPrefix("0.3")
        else { return }
        let list = cached.list
        var rt = rt
        rt.capabilityArgs = cached.capabilityArgs
        rt.args = cached.cniArgs
        for index in list.plugins.indices {
            let config = CNIPluginRunner.stdinConfig(list, plugin: index, prevResult: result, rt: rt)
            _ = try await runner.run(.check, type: list.pluginType(index), config: config, rt: rt)
        }
    }
}
