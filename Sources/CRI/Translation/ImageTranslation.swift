import CRIAPI
import Errors
import Foundation
import Images

extension ImageRecord {
    /// The CRI view of a stored image.
    var cri: Runtime_V1_Image {
        var image = Runtime_V1_Image()
        image.id = idString
        image.repoTags = repoTags
        image.repoDigests = repoDigests
        image.size = UInt64(max(0, size))
        if let uid {
            var v = Runtime_V1_Int64Value()
            v.value = uid
            image.uid = v
        }
        image.username = username
        var spec = Runtime_V1_ImageSpec()
        spec.image = idString
        image.spec = spec
        image.pinned = pinned
        return image
    }
}

extension Runtime_V1_AuthConfig {
    /// Registry credentials from a CRI `AuthConfig` (`auth` wins over username/password, as in containerd).
    func credentials() throws -> RegistryCredentials {
        var c =
            auth.isEmpty
            ? RegistryCredentials(username: username, password: password) : try RegistryCredentials(auth: auth)
        c.identityToken = identityToken
        c.registryToken = registryToken
        return c
    }
}

extension ImageService {
    /// The image name a request carries, or INVALID_ARGUMENT naming the field.
    static func imageName(_ spec: Runtime_V1_ImageSpec, hasSpec: Bool, field: String) throws -> String {
        let name = spec.image.trimmingCharacters(in: .whitespaces)
        guard hasSpec, !name.isEmpty else { throw CocoonError.invalidArgument("\(field).image is empty") }
        return name
    }
}
