import Foundation
import Glibc
import Testing

@testable import ContainerCore

/// What a privileged container is given of /dev: device nodes only, nested ones too, never through
/// a symbolic link, and none of what its own /dev has.
@Suite struct HostDevicesTests {
    @Test func onlyDeviceNodesOutsideTheContainersOwnAreListed() throws {
        let dev = NSTemporaryDirectory() + "cocoon-dev-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: dev) }  // test scratch
        for dir in ["", "/pts", "/net", "/deep/er/still"] {
            try FileManager.default.createDirectory(atPath: dev + dir, withIntermediateDirectories: true)
        }
        for node in ["kmsg", "null", "pts/0", "net/tun", "deep/er/still/x"] {
            #expect(mknod(dev + "/" + node, S_IFCHR | 0o600, dev_t(1 << 8 | 3)) == 0, "mknod \(node): \(errno)")
        }
        #expect(mknod(dev + "/loop0", S_IFBLK | 0o600, dev_t(7 << 8)) == 0)
        FileManager.default.createFile(atPath: dev + "/plain", contents: Data())
        try FileManager.default.createSymbolicLink(atPath: dev + "/linked", withDestinationPath: dev + "/net")
        #expect(HostDevices.nodes(under: dev) == ["kmsg", "loop0", "net/tun"])
        #expect(HostDevices.nodes(under: dev, depth: 4) == ["deep/er/still/x", "kmsg", "loop0", "net/tun"])
    }
}
