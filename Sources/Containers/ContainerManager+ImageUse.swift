/// Which image root filesystems the node's containers still use: a removed image's unpacked tree
/// is a native container's overlay lower layer, and must outlive the image while the container does
/// (containerd keeps a snapshot under a container's lease the same way).
extension ContainerManager {
    /// The root filesystems (block image paths) every existing container was made from.
    public func rootfsImagesInUse() -> Set<String> { Set(records.values.compactMap(\.rootfsImage)) }

    /// Sets who is told, after each container removal, the root filesystems still in use.
    public func onRootfsUseChange(_ hook: @escaping @Sendable (Set<String>) async -> Void) {
        rootfsUseChanged = hook
    }
}
