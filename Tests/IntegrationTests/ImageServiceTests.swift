import CRIAPI
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Testing

/// The image service against real registries (Debian's docker-registry, started by
/// `scripts/registry start`): plain on :5000 (with one tampered blob), basic auth on :5001, bearer
/// tokens on :5002. Test images and their digests come from images/build-test-images.
@Suite(
    .serialized,
    .enabled(if: TestImages.available, "run scripts/registry start and set COCOON_TEST_IMAGES (scripts/test does)"))
struct ImageServiceTests {
    typealias Images = Runtime_V1_ImageService.Client<HTTP2ClientTransport.Posix>
    static let plain = "127.0.0.1:5000"
    static let basic = "127.0.0.1:5001"
    static let token = "127.0.0.1:5002"

    @Test func pullByTagAndByDigest() async throws {
        let busybox = try TestImages.entry("busybox")
        try await withDaemon { daemon in
            try await daemon.withImages { img in
                let fsBefore = try await img.imageFsInfo(Runtime_V1_ImageFsInfoRequest()).imageFilesystems[0]
                let id = try await pull(img, "\(Self.plain)/busybox:latest")
                #expect(id == busybox["config"] as? String)
                let status = try #require(try await imageStatus(img, "\(Self.plain)/busybox").image_)
                #expect(status.repoTags == ["\(Self.plain)/busybox:latest"])
                #expect(status.repoDigests == ["\(Self.plain)/busybox@\(busybox["digest"] as? String ?? "")"])
                #expect(status.size > 1_000_000)

                let byDigest = try await pull(img, "\(Self.plain)/busybox@\(busybox["digest"] as? String ?? "")")
                #expect(byDigest == id)
                var list = Runtime_V1_ListImagesRequest()
                list.filter.image.image = id
                #expect(try await img.listImages(list).images.map(\.id) == [id])
                #expect(try await img.listImages(Runtime_V1_ListImagesRequest()).images.count == 1)

                let fsAfter = try await img.imageFsInfo(Runtime_V1_ImageFsInfoRequest()).imageFilesystems[0]
                #expect(fsAfter.usedBytes.value > fsBefore.usedBytes.value + 1_000_000)
                #expect(fsAfter.inodesUsed.value > fsBefore.inodesUsed.value + 10)
                #expect(fsAfter.fsID.mountpoint == daemon.stateRoot + "/images")
            }
        }
    }

    @Test func multiLayerImageUnpacksWithWhiteoutsLinksAndOwners() async throws {
        let expect = try TestImages.json("multilayer.expect.json")
        try await withDaemon { daemon in
            try await daemon.withImages { img in
                _ = try await pull(img, "\(Self.plain)/multilayer")
                let status = try await imageStatus(img, "\(Self.plain)/multilayer", verbose: true)
                let info = try #require(status.info["info"])
                let rootfs = try #require(
                    (try JSONSerialization.jsonObject(with: Data(info.utf8)) as? [String: Any])?["rootfs"] as? String)
                #expect(status.info["imageConfig"]?.contains("\"diff_ids\"") == true)
                // The block image a pod VM attaches: EROFS (magic e0f5e1e2 at offset 1024).
                let image = try #require(
                    (try JSONSerialization.jsonObject(with: Data(info.utf8)) as? [String: Any])?["rootfsImage"]
                        as? String)
                #expect(await waitForFile(image), "the block image is built right after the pull")
                let head = try #require(FileManager.default.contents(atPath: image)?.prefix(1028))
                #expect(head.count == 1028 && Array(head.suffix(4)) == [0xE2, 0xE1, 0xF5, 0xE0])
                for case let e as [String: Any] in expect["must_exist"] as? [Any] ?? [] {
                    let path = rootfs + (e["path"] as? String ?? "")
                    var st = stat()
                    #expect(lstat(path, &st) == 0, "missing \(path)")
                    switch e["type"] as? String {
                    case "symlink":
                        #expect(
                            (try? FileManager.default.destinationOfSymbolicLink(atPath: path)) == e["target"]
                                as? String, "\(path)")
                    case "dir": #expect(st.st_mode & S_IFMT == S_IFDIR, "\(path) is not a directory")
                    case "hardlink", "file":
                        #expect(st.st_mode & S_IFMT == S_IFREG, "\(path) is not a file")
                        if let content = e["content"] as? String {
                            #expect((try? String(contentsOfFile: path, encoding: .utf8)) == content, "\(path) content")
                        }
                    default: break
                    }
                    if let mode = e["mode"] as? String {
                        #expect(
                            String(st.st_mode & 0o7777, radix: 8) == String(Int(mode, radix: 8) ?? -1, radix: 8),
                            "\(path) mode")
                    }
                    if let uid = e["uid"] as? Int { #expect(Int(st.st_uid) == uid, "\(path) uid") }
                    if let gid = e["gid"] as? Int { #expect(Int(st.st_gid) == gid, "\(path) gid") }
                    if let linkTo = e["hardlink_of"] as? String {
                        var other = stat()
                        #expect(
                            lstat(rootfs + linkTo, &other) == 0 && other.st_ino == st.st_ino,
                            "\(path) is not a hard link to \(linkTo)")
                    }
                }
                for case let gone as String in expect["must_not_exist"] as? [Any] ?? [] {
                    var st = stat()
                    #expect(lstat(rootfs + gone, &st) != 0, "\(gone) should have been whited out")
                }
            }
        }
    }

    @Test func indexResolvesToTheNodePlatformAndNonRootUserIsReported() async throws {
        let multiarch = try TestImages.entry("multiarch")
        let amd64 = try #require((multiarch["manifests"] as? [String: Any])?["linux/amd64"] as? [String: Any])
        try await withDaemon { daemon in
            try await daemon.withImages { img in
                let id = try await pull(img, "\(Self.plain)/multiarch:latest")
                #expect(id == amd64["config"] as? String)
                let s = try #require(try await imageStatus(img, id).image_)
                #expect(s.repoDigests == ["\(Self.plain)/multiarch@\(multiarch["digest"] as? String ?? "")"])

                _ = try await pull(img, "\(Self.plain)/nonroot")
                let nonroot = try #require(try await imageStatus(img, "\(Self.plain)/nonroot").image_)
                #expect(nonroot.hasUid && nonroot.uid.value == 1000)
                #expect(nonroot.username == "")
            }
        }
    }

    @Test func concurrentPullsOfOneImageShareOneDownload() async throws {
        try await withDaemon { daemon in
            try await daemon.withImages { img in
                async let a = pull(img, "\(Self.plain)/multilayer:latest")
                async let b = pull(img, "\(Self.plain)/multilayer")
                let (ia, ib) = try await (a, b)
                #expect(ia == ib)
                let starts = daemon.daemonLog().components(separatedBy: "pull started").count - 1
                #expect(starts == 1, "the second pull should join the first")
                let info = try #require(try await imageStatus(img, ia, verbose: true).info["info"])
                let image = try #require(
                    (try JSONSerialization.jsonObject(with: Data(info.utf8)) as? [String: Any])?["rootfsImage"]
                        as? String)
                #expect(await waitForFile(image))
                #expect(
                    try FileManager.default.contentsOfDirectory(atPath: daemon.stateRoot + "/images/ingest").isEmpty)
                #expect(try FileManager.default.contentsOfDirectory(atPath: daemon.stateRoot + "/images/tmp").isEmpty)
            }
        }
    }

    @Test func tamperedBlobIsRefusedAndNothingIsStored() async throws {
        let tampered = try TestImages.entry("tampered")
        let bad = try #require(tampered["corrupted_layer"] as? String)
        try await withDaemon { daemon in
            try await daemon.withImages { img in
                let error = await #expect(throws: RPCError.self) { try await pull(img, "\(Self.plain)/tampered") }
                #expect(error?.code == .dataLoss)
                #expect(error?.message.contains("digest mismatch") == true, "\(error?.message ?? "")")
                #expect(try await img.listImages(Runtime_V1_ListImagesRequest()).images.isEmpty)
                let blobs = try FileManager.default.contentsOfDirectory(
                    atPath: daemon.stateRoot + "/images/blobs/sha256")
                #expect(!blobs.contains(String(bad.dropFirst(7))))
                #expect(blobs.isEmpty, "a failed pull keeps no blobs: \(blobs)")
                #expect(
                    try FileManager.default.contentsOfDirectory(atPath: daemon.stateRoot + "/images/ingest").isEmpty)
                #expect(
                    try FileManager.default.contentsOfDirectory(atPath: daemon.stateRoot + "/images/rootfs").isEmpty)
            }
        }
    }

    @Test(arguments: [basic, token])
    func authenticatedRegistries(registry: String) async throws {
        try await withDaemon { daemon in
            try await daemon.withImages { img in
                let anonymous = await #expect(throws: RPCError.self) { try await pull(img, "\(registry)/busybox") }
                #expect(anonymous?.code == .unauthenticated, "\(anonymous?.message ?? "")")
                let wrong = await #expect(throws: RPCError.self) {
                    try await pull(img, "\(registry)/busybox", user: "cocoon", password: "nope")
                }
                #expect(wrong?.code == .permissionDenied, "\(wrong?.message ?? "")")
                #expect(wrong?.message.contains("cocoon") == true)
                let id = try await pull(img, "\(registry)/busybox", user: "cocoon", password: "s3cret")
                #expect(id == (try TestImages.entry("busybox"))["config"] as? String)
                // The docker-config `auth` field works as well.
                var request = Runtime_V1_PullImageRequest()
                request.image.image = "\(registry)/nonroot"
                request.auth.auth = Data("cocoon:s3cret".utf8).base64EncodedString()
                _ = try await img.pullImage(request)
            }
        }
    }

    /// Issue 27: a bearer token (or a joined pull) obtained with one client's credentials never serves
    /// a client without them: right after an authenticated pull, an anonymous pull of the same
    /// repository is refused, and so is one started while an authenticated pull of it runs.
    @Test(arguments: [basic, token])
    func aPullWithoutCredentialsNeverRidesOnOneWithThem(registry: String) async throws {
        try await withDaemon { daemon in
            try await daemon.withImages { img in
                _ = try await pull(img, "\(registry)/busybox", user: "cocoon", password: "s3cret")
                let after = await #expect(throws: RPCError.self) { try await pull(img, "\(registry)/busybox") }
                #expect(after?.code == .unauthenticated, "\(after?.message ?? "")")
                async let authenticated = pull(img, "\(registry)/multilayer", user: "cocoon", password: "s3cret")
                let during = await #expect(throws: RPCError.self) { try await pull(img, "\(registry)/multilayer") }
                #expect(during?.code == .unauthenticated, "\(during?.message ?? "")")
                _ = try await authenticated
                // Other credentials do not ride either.
                let wrong = await #expect(throws: RPCError.self) {
                    try await pull(img, "\(registry)/busybox", user: "cocoon", password: "nope")
                }
                #expect(wrong?.code == .permissionDenied, "\(wrong?.message ?? "")")
            }
        }
    }

    @Test func removeByTagDigestAndIdIsIdempotentAndFreesBlobs() async throws {
        let busybox = try TestImages.entry("busybox")
        let digest = try #require(busybox["digest"] as? String)
        let creds = "[registry]\nmax_concurrent_downloads = 2\n"
        try await withDaemon(extraConfig: creds) { daemon in
            try await daemon.withImages { img in
                let id = try await pull(img, "\(Self.plain)/busybox")
                _ = try await pull(img, "\(Self.basic)/busybox", user: "cocoon", password: "s3cret")
                var s = try #require(try await imageStatus(img, id).image_)
                #expect(Set(s.repoTags) == ["\(Self.plain)/busybox:latest", "\(Self.basic)/busybox:latest"])

                try await remove(img, "\(Self.basic)/busybox:latest")  // one tag of two: only the tag goes
                s = try #require(try await imageStatus(img, id).image_)
                #expect(s.repoTags == ["\(Self.plain)/busybox:latest"])

                try await remove(img, "\(Self.plain)/busybox@\(digest)")  // by digest: the image goes
                #expect(try await imageStatus(img, id).hasImage == false)
                try await remove(img, "\(Self.plain)/busybox@\(digest)")  // idempotent

                _ = try await pull(img, "\(Self.plain)/busybox")
                try await remove(img, id)
                try await remove(img, id)
                #expect(try await img.listImages(Runtime_V1_ListImagesRequest()).images.isEmpty)
                #expect(
                    try FileManager.default.contentsOfDirectory(atPath: daemon.stateRoot + "/images/blobs/sha256")
                        .isEmpty)
                #expect(
                    try FileManager.default.contentsOfDirectory(atPath: daemon.stateRoot + "/images/rootfs").isEmpty)
            }
        }
    }

    /// Mirrors are tried in order before the registry itself: a dead mirror is skipped, a live one
    /// serves the image of a registry that does not exist.
    @Test func mirrorsServeARegistry() async throws {
        let mirrors =
            "[registry.mirrors]\n\"registry.invalid:5000\" = [\"http://127.0.0.1:1\", \"http://\(Self.plain)\"]\n"
        try await withDaemon(extraConfig: mirrors) { daemon in
            try await daemon.withImages { img in
                let id = try await pull(img, "registry.invalid:5000/busybox:latest")
                #expect(id == (try TestImages.entry("busybox"))["config"] as? String)
                let s = try #require(try await imageStatus(img, "registry.invalid:5000/busybox").image_)
                #expect(s.repoTags == ["registry.invalid:5000/busybox:latest"])
                let none = await #expect(throws: RPCError.self) { try await pull(img, "registry.invalid:5000/absent") }
                #expect(
                    none?.code == .notFound,
                    "the mirror's answer beats the unreachable registry: \(none?.message ?? "")")
            }
        }
    }

    @Test func imagesSurviveADaemonRestart() async throws {
        try await withDaemon { daemon in
            let id = try await daemon.withImages { img in try await pull(img, "\(Self.plain)/nonroot") }
            await daemon.stop()
            try await daemon.start()
            try await daemon.withImages { img in
                let s = try #require(try await imageStatus(img, "\(Self.plain)/nonroot:latest").image_)
                #expect(s.id == id)
                #expect(s.uid.value == 1000)
                #expect(try await img.listImages(Runtime_V1_ListImagesRequest()).images.map(\.id) == [id])
            }
        }
    }

    @Test func badRequestsGetClearErrors() async throws {
        try await withDaemon { daemon in
            try await daemon.withImages { img in
                let empty = await #expect(throws: RPCError.self) { try await pull(img, "") }
                #expect(empty?.code == .invalidArgument)
                let bad = await #expect(throws: RPCError.self) { try await pull(img, "\(Self.plain)/Not_Valid!") }
                #expect(bad?.code == .invalidArgument)
                let missing = await #expect(throws: RPCError.self) {
                    try await pull(img, "\(Self.plain)/no-such-image:v9")
                }
                #expect(missing?.code == .notFound)
                #expect(missing?.message.contains("no-such-image") == true)
                let digest = await #expect(throws: RPCError.self) {
                    try await pull(img, "\(Self.plain)/busybox@sha256:1234")
                }
                #expect(digest?.code == .invalidArgument)
                #expect(try await imageStatus(img, "\(Self.plain)/never-pulled").hasImage == false)
                try await remove(img, "\(Self.plain)/never-pulled")
            }
        }
    }
}

// MARK: - helpers

/// Polls for a file the daemon produces in the background (the block image), up to 30 s.
func waitForFile(_ path: String) async -> Bool {
    for _ in 0..<300 {
        if FileManager.default.fileExists(atPath: path) { return true }
        // sleep: a poll pause; the loop checks the condition
        try? await Task.sleep(for: .milliseconds(100))
    }
    return false
}

func pull(
    _ img: Runtime_V1_ImageService.Client<HTTP2ClientTransport.Posix>, _ name: String, user: String = "",
    password: String = ""
) async throws -> String {
    var r = Runtime_V1_PullImageRequest()
    r.image.image = name
    r.auth.username = user
    r.auth.password = password
    return try await img.pullImage(r).imageRef
}

func imageStatus(
    _ img: Runtime_V1_ImageService.Client<HTTP2ClientTransport.Posix>, _ name: String, verbose: Bool = false
) async throws -> Runtime_V1_ImageStatusResponse {
    var r = Runtime_V1_ImageStatusRequest()
    r.image.image = name
    r.verbose = verbose
    return try await img.imageStatus(r)
}

func remove(_ img: Runtime_V1_ImageService.Client<HTTP2ClientTransport.Posix>, _ name: String) async throws {
    var r = Runtime_V1_RemoveImageRequest()
    r.image.image = name
    _ = try await img.removeImage(r)
}

extension Runtime_V1_ImageStatusResponse {
    var image_: Runtime_V1_Image? { hasImage ? image : nil }
}

/// The test images' digests (images.json from images/build-test-images).
enum TestImages {
    static var dir: String { ProcessInfo.processInfo.environment["COCOON_TEST_IMAGES"] ?? "" }
    static var available: Bool {
        !dir.isEmpty && FileManager.default.fileExists(atPath: dir + "/images.json")
            && ProcessInfo.processInfo.environment["COCOON_TEST_REGISTRY"] == "1"
    }
    static func json(_ name: String) throws -> [String: Any] {
        let data = try Data(contentsOf: URL(fileURLWithPath: dir + "/" + name))
        return try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
    }
    static func entry(_ image: String) throws -> [String: Any] {
        try json("images.json")[image] as? [String: Any] ?? [:]
    }
}
