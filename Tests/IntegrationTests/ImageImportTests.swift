import CLI
import CRIAPI
import CocoonAPI
import Foundation
import GRPCCore
import Testing

/// `cocoon.v1.Images/Import` through the real daemon: OCI layout directories and tars, and a
/// `docker save` (legacy manifest.json) tarball built from the test images.
@Suite(.serialized, .enabled(if: TestImages.available, "needs the test images (scripts/test builds them)"))
struct ImageImportTests {
    @Test func importsLayoutsTarsAndDockerSave() async throws {
        let busybox = try TestImages.entry("busybox")
        let busyboxID = try #require(busybox["config"] as? String)
        let amd64 = try #require(
            ((try TestImages.entry("multiarch"))["manifests"] as? [String: Any])?["linux/amd64"] as? [String: Any])
        try await withDaemon { daemon in
            let endpoint = try Endpoint(parsing: daemon.socket)
            // An OCI layout directory, named by the caller (its index only says "latest").
            let fromDir = try await endpoint.importImage(
                .init(path: TestImages.dir + "/busybox", name: "local/busybox"), options: .defaults)
            #expect(fromDir.images.map(\.id) == [busyboxID])
            #expect(fromDir.images.first?.names.first == "docker.io/local/busybox:latest")

            // A tar of a multi-arch layout: the node's platform is chosen.
            let tar = daemon.root + "/multiarch-oci.tar"
            try shell("tar -C '\(TestImages.dir)/multiarch' -cf '\(tar)' .")
            let fromTar = try await endpoint.importImage(.init(path: tar), options: .defaults)
            #expect(fromTar.images.map(\.id) == [amd64["config"] as? String ?? ""])
            #expect(fromTar.images.first?.names.first == "docker.io/import/multiarch-oci:latest")

            // docker save (legacy layout): config + uncompressed layer.tar + manifest.json.
            let saved = daemon.root + "/saved"
            let layout = TestImages.dir + "/busybox/blobs/sha256/"
            let layer = try #require(
                ((busybox["layers"] as? [[String: Any]])?.first?["digest"] as? String)?.dropFirst(7))
            try shell(
                """
                mkdir -p '\(saved)/l1' \
                && cp '\(layout)\(busyboxID.dropFirst(7))' '\(saved)/\(busyboxID.dropFirst(7)).json' \
                && gzip -dc < '\(layout)\(layer)' > '\(saved)/l1/layer.tar' \
                && printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["l1/layer.tar"]}]' \
                  '\(busyboxID.dropFirst(7))' example.com/saved/busybox:v1 > '\(saved)/manifest.json' \
                && tar -C '\(saved)' -cf '\(saved).tar' .
                """)
            let fromSave = try await endpoint.importImage(.init(path: saved + ".tar"), options: .defaults)
            #expect(fromSave.images.map(\.id) == [busyboxID])
            // The same as a directory: imported from a copy, the caller's directory left as it was.
            let before = try FileManager.default.subpathsOfDirectory(atPath: saved).sorted()
            let fromSaveDir = try await endpoint.importImage(.init(path: saved), options: .defaults)
            #expect(fromSaveDir.images.map(\.id) == [busyboxID])
            #expect(try FileManager.default.subpathsOfDirectory(atPath: saved).sorted() == before)
            try await daemon.withImages { img in
                let s = try #require(try await imageStatus(img, "example.com/saved/busybox:v1", verbose: true).image_)
                #expect(s.repoTags.contains("example.com/saved/busybox:v1"))
                #expect(s.repoTags.contains("docker.io/local/busybox:latest"))  // same config: one image, two names
                let info = try #require(try await imageStatus(img, busyboxID, verbose: true).info["info"])
                let rootfs = try #require(
                    (try JSONSerialization.jsonObject(with: Data(info.utf8)) as? [String: Any])?["rootfs"] as? String)
                #expect(FileManager.default.isExecutableFile(atPath: rootfs + "/bin/busybox"))
            }

            // Bad input: relative path, missing file, an archive that is no image, a hostile tar.
            let relative = await #expect(throws: RPCError.self) {
                try await endpoint.importImage(.init(path: "x.tar"), options: .defaults)
            }
            #expect(relative?.code == .invalidArgument)
            let missing = await #expect(throws: RPCError.self) {
                try await endpoint.importImage(.init(path: "/nonexistent.tar"), options: .defaults)
            }
            #expect(missing?.code == .notFound)
            try shell(
                "mkdir -p '\(daemon.root)/junk' && echo hi > '\(daemon.root)/junk/readme' && tar -C "
                    + "'\(daemon.root)/junk' -cf '\(daemon.root)/junk.tar' ."
            )
            let junk = await #expect(throws: RPCError.self) {
                try await endpoint.importImage(.init(path: daemon.root + "/junk.tar"), options: .defaults)
            }
            #expect(junk?.code == .invalidArgument)
            try shell(
                "cd '\(daemon.root)' && mkdir -p a && echo x > evil && tar -cf hostile.tar --transform "
                    + "'s,^evil,../evil,' evil"
            )
            let hostile = await #expect(throws: RPCError.self) {
                try await endpoint.importImage(.init(path: daemon.root + "/hostile.tar"), options: .defaults)
            }
            #expect(hostile?.code == .invalidArgument)
            #expect(hostile?.message.contains("..") == true)
            #expect(try FileManager.default.contentsOfDirectory(atPath: daemon.stateRoot + "/images/tmp").isEmpty)
        }
    }
}

func shell(_ script: String) throws {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/sh")
    p.arguments = ["-c", script]
    try p.run()
    p.waitUntilExit()
    guard p.terminationStatus == 0 else { throw HarnessError("shell failed (\(p.terminationStatus)): \(script)") }
}
