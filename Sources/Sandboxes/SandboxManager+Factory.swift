import Errors

/// The daemon's and the CRI's handles on the VM factory's templates and pools.
extension SandboxManager {
    /// Starts loading or building the template of every handler that starts pods from one.
    public func prepareTemplates() async { await factory.prepareTemplates() }

    /// Ends template builds and pool refills (the daemon is stopping), and the pools' VMs.
    public func stopTemplates() async { await factory.stop() }

    /// Builds the template of `handler` (empty: of every template handler) again now: the saved
    /// one is removed, the pool drained and refilled from the new one. Running pods are untouched.
    public func rebuildTemplates(_ handler: String) async throws(CocoonError) -> [TemplateStatus] {
        try await factory.rebuildTemplates(handler)
    }

    /// Every template handler's template and pool.
    public func templateStatus() async -> [TemplateStatus] { await factory.status() }
}
