import CRIAPI
import Images

/// The CRI v1 ImageService over Cocoon's image store. Each call lives in its own file
/// (`PullImage.swift`, …).
public struct ImageService: Runtime_V1_ImageService.SimpleServiceProtocol {
    let images: ImageManager
    /// The root filesystems the node's containers use (kept when their image is removed).
    let treesInUse: @Sendable () async -> Set<String>

    public init(images: ImageManager, treesInUse: @escaping @Sendable () async -> Set<String> = { [] }) {
        self.images = images
        self.treesInUse = treesInUse
    }
}
