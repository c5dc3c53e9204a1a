import CRIAPI
import Images

/// The CRI v1 ImageService over Cocoon's image store. Each call lives in its own file
/// (`PullImage.swift`, …).
public struct ImageService: Runtime_V1_ImageService.SimpleServiceProtocol {
    let images: ImageManager

    public init(images: ImageManager) {
        self.images = images
    }
}
