import CArchive
import Errors
import Foundation
import Images
import Testing

/// Reference normalization, auth challenges and the plain-HTTP rule: pure logic.
struct ImageReferenceTests {
    @Test func normalizesAsTheKubeletDoes() throws {
        #expect(try ImageReference(parsing: "busybox").description == "docker.io/library/busybox:latest")
        #expect(try ImageReference(parsing: "library/busybox:1.36").description == "docker.io/library/busybox:1.36")
        #expect(try ImageReference(parsing: "index.docker.io/foo/bar").description == "docker.io/foo/bar:latest")
        #expect(try ImageReference(parsing: "127.0.0.1:5000/busybox").description == "127.0.0.1:5000/busybox:latest")
        #expect(try ImageReference(parsing: "localhost/a/b/c:v1").path == "a/b/c")
        let d = "sha256:" + String(repeating: "ab", count: 32)
        let byDigest = try ImageReference(parsing: "quay.io/x/y:tag@\(d)")
        #expect(byDigest.description == "quay.io/x/y@\(d)")
        #expect(byDigest.manifestReference == d)
        #expect(byDigest.tag == nil)
    }

    @Test(arguments: [
        "", "UPPER/case", "a//b", "busybox:", "busybox@sha256:12", "x/-bad", "busybox:t@g",
        "a/b:" + String(repeating: "t", count: 200),
    ])
    func refusesMalformedReferences(_ text: String) {
        #expect(throws: CocoonError.self) { try ImageReference(parsing: text) }
    }

    @Test func parsesChallenges() throws {
        let c = try #require(
            AuthChallenge(
                header: #"Bearer realm="https://auth.example/token",service="registry.example","#
                    + #"scope="repository:a/b:pull,push""#
            ))
        #expect(c.scheme == .bearer)
        #expect(c.parameters["realm"] == "https://auth.example/token")
        #expect(c.parameters["scope"] == "repository:a/b:pull,push")
        #expect(AuthChallenge(header: #"Basic realm="Registry Realm""#)?.scheme == .basic)
        #expect(AuthChallenge(header: "Negotiate abc") == nil)
    }

    @Test func plainHTTPOnlyForLoopbackAndInsecureHosts() {
        #expect(RegistryClient.allowsPlainHTTP("127.0.0.1:5000", insecure: []))
        #expect(RegistryClient.allowsPlainHTTP("localhost:5000", insecure: []))
        #expect(RegistryClient.allowsPlainHTTP("[::1]:5000", insecure: []))
        #expect(!RegistryClient.allowsPlainHTTP("docker.io", insecure: []))
        #expect(!RegistryClient.allowsPlainHTTP("127.0.0.1.evil.com", insecure: []))
        #expect(RegistryClient.allowsPlainHTTP("reg.lan:5000", insecure: ["reg.lan:5000"]))
    }

    @Test func credentialsFromDockerAuthField() throws {
        let c = try RegistryCredentials(auth: Data("user:pa:ss".utf8).base64EncodedString())
        #expect(c.username == "user" && c.password == "pa:ss")
        #expect(throws: CocoonError.self) { try RegistryCredentials(auth: "!!") }
    }
}

/// The content store refuses bytes that do not match their digest and keeps nothing of them.
struct ContentStoreTests {
    @Test func verifiesDigestsAndStoresAtomically() throws {
        let dir = try scratchDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try ContentStore(root: dir)
        let good = Array("hello".utf8)
        let digest = Digest.of(good)
        try store.put(good, digest: digest)
        #expect(store.has(digest, size: 5))
        let other = Digest.of(Array("other".utf8))
        #expect(throws: CocoonError.self) { try store.put(Array("tampered".utf8), digest: other) }
        #expect(!store.has(other))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir + "/ingest").isEmpty)
        let w = try store.writer(digest: other, expectedSize: 2)
        #expect(throws: CocoonError.self) { try w.append(Array("abc".utf8)) }
        w.abort()
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir + "/ingest").isEmpty)
    }

    /// A blob whose descriptor declares more than the disk can hold is refused before a byte is
    /// fetched, and one that grows past the floor while it streams is cut; nothing is kept.
    @Test func aDownloadNeverFillsTheDisk() throws {
        let dir = try scratchDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try ContentStore(root: dir)
        let huge = #expect(throws: CocoonError.self) {
            _ = try store.writer(digest: Digest.of([1]), expectedSize: 1 << 60)
        }
        #expect(huge?.code == .failedPrecondition && huge?.message.contains("MiB free") == true)
        // A floor 4 MiB under what is free now: the check after 16 MiB written finds it crossed.
        var fs = statvfs()
        #expect(statvfs(dir, &fs) == 0)
        let free = Int64(fs.f_bavail) * Int64(fs.f_frsize)
        let full = try ContentStore(root: dir, reserveFreeBytes: free - (4 << 20))
        let w = try full.writer(digest: Digest.of([2]), expectedSize: nil)
        let chunk = [UInt8](repeating: 0, count: 4 << 20)
        let cut = #expect(throws: CocoonError.self) { for _ in 0..<5 { try w.append(chunk) } }
        #expect(cut?.code == .failedPrecondition, "\(String(describing: cut))")
        w.abort()
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir + "/ingest").isEmpty)
    }
}

/// Layers applied for real (root, on the host): whiteouts, links, and every escape attempt refused.
@Suite(.serialized) struct LayerUnpackerTests {
    @Test func appliesLayersWithWhiteoutsOpaqueDirsAndLinks() throws {
        let dir = try scratchDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let rootfs = dir + "/rootfs"
        try FileManager.default.createDirectory(atPath: rootfs, withIntermediateDirectories: true)
        let lower = try TarFixture.write(
            dir + "/l1.tar.gz", gzip: true,
            [
                .dir("etc"), .file("etc/a", "A"), .file("etc/b", "B"), .dir("opq"), .file("opq/old", "old"),
                .symlink("link", "/etc/a"), .dir("keep"),
            ])
        let upper = try TarFixture.write(
            dir + "/l2.tar", gzip: false,
            [
                .file("etc/.wh.a", ""), .dir("opq"), .file("opq/.wh..wh..opq", ""), .file("opq/new", "new"),
                .file("link", "now a file"), .hardlink("keep/hl", "etc/b"),
            ])
        let u = LayerUnpacker(root: rootfs)
        try u.apply(layerAt: lower)
        let stats = try u.apply(layerAt: upper)
        #expect(stats.whiteouts == 2)
        let fm = FileManager.default
        #expect(!fm.fileExists(atPath: rootfs + "/etc/a"))
        #expect(fm.fileExists(atPath: rootfs + "/etc/b"))
        #expect(!fm.fileExists(atPath: rootfs + "/opq/old"))
        #expect((try? String(contentsOfFile: rootfs + "/opq/new", encoding: .utf8)) == "new")
        #expect((try? String(contentsOfFile: rootfs + "/link", encoding: .utf8)) == "now a file")
        var a = stat(), b = stat()
        #expect(lstat(rootfs + "/keep/hl", &a) == 0 && lstat(rootfs + "/etc/b", &b) == 0 && a.st_ino == b.st_ino)
    }

    /// A layer may not fill the host's disk, nor an image's layers together exceed one budget.
    @Test func unpackingStopsBeforeTheDiskFillsAndAtTheImagesBudget() throws {
        let dir = try scratchDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let rootfs = dir + "/rootfs"
        try FileManager.default.createDirectory(atPath: rootfs, withIntermediateDirectories: true)
        let layer = try TarFixture.write(
            dir + "/l.tar", gzip: false, [.file("big", String(repeating: "x", count: 4096))])
        var u = LayerUnpacker(root: rootfs)
        u.reserveFreeBytes = Int64.max / 2  // more than any disk has
        let full = #expect(throws: CocoonError.self) { try u.apply(layerAt: layer) }
        #expect(
            full?.code == .failedPrecondition && full?.message.contains("MiB free") == true,
            "\(String(describing: full))")
        u.reserveFreeBytes = 0
        u.maxUnpackedBytes = 4095
        let bomb = #expect(throws: CocoonError.self) { try u.apply(layerAt: layer) }
        #expect(bomb?.message.contains("expands beyond") == true)
    }

    /// A layer of many empty files (an inode bomb within any byte budget) is refused at its cap.
    @Test func aLayerWithTooManyEntriesIsRefused() throws {
        let dir = try scratchDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let rootfs = dir + "/rootfs"
        try FileManager.default.createDirectory(atPath: rootfs, withIntermediateDirectories: true)
        let layer = try TarFixture.write(dir + "/many.tar", gzip: false, (0..<11).map { .file("f\($0)", "") })
        var u = LayerUnpacker(root: rootfs)
        u.maxEntries = 10
        let refused = #expect(throws: CocoonError.self) { try u.apply(layerAt: layer) }
        #expect(refused?.message.contains("more than 10 entries") == true, "\(String(describing: refused))")
        u.maxEntries = 11
        #expect(try u.apply(layerAt: layer).entries == 11)
    }

    /// Each hostile layer is refused and writes nothing outside the root.
    @Test(arguments: HostileCase.allCases)
    func refusesHostileLayers(_ c: HostileCase) throws {
        let dir = try scratchDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let rootfs = dir + "/rootfs"
        let outside = dir + "/outside"
        try FileManager.default.createDirectory(atPath: rootfs, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: true)
        try "precious".write(toFile: outside + "/victim", atomically: true, encoding: .utf8)
        let layer = try TarFixture.write(dir + "/evil.tar", gzip: false, c.entries(outside: outside))
        #expect(throws: CocoonError.self) { try LayerUnpacker(root: rootfs).apply(layerAt: layer) }
        #expect(try FileManager.default.contentsOfDirectory(atPath: outside) == ["victim"])
        #expect((try? String(contentsOfFile: outside + "/victim", encoding: .utf8)) == "precious")
    }

    enum HostileCase: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case dotDot, absolute, throughSymlink, throughAbsoluteSymlink, hardlinkOut, whiteoutOut, hardlinkAbsolute
        var testDescription: String { rawValue }
        func entries(outside: String) -> [TarFixture.Entry] {
            let rel = "../outside"
            switch self {
            case .dotDot: return [.file("a/../../outside/evil", "x")]
            case .absolute: return [.file(outside + "/evil", "x")]
            case .throughSymlink: return [.symlink("esc", rel), .file("esc/evil", "x")]
            case .throughAbsoluteSymlink:
                return [.symlink("esc", outside), .dir("esc/sub"), .file("esc/victim", "overwritten")]
            case .hardlinkOut: return [.hardlink("hl", "../outside/victim")]
            case .hardlinkAbsolute: return [.hardlink("hl", outside + "/victim")]
            case .whiteoutOut: return [.symlink("esc", outside), .file("esc/.wh.victim", "")]
            }
        }
    }
}

func scratchDir() throws -> String {
    let dir = "/tmp/cocoon-ut-" + String(UUID().uuidString.prefix(8))
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

/// Writes tar layers with arbitrary (also hostile) entry names through libarchive's writer.
enum TarFixture {
    enum Entry {
        case file(String, String), dir(String), symlink(String, String), hardlink(String, String)
    }

    static func write(_ path: String, gzip: Bool, _ entries: [Entry]) throws -> String {
        guard let a = archive_write_new() else { throw CocoonError.internalError("archive_write_new") }
        defer { archive_write_free(a) }
        archive_write_set_format_pax_restricted(a)
        if gzip { archive_write_add_filter_gzip(a) }
        guard archive_write_open_filename(a, path) == ARCHIVE_OK else {
            throw CocoonError.internalError("open \(path)")
        }
        for e in entries {
            guard let entry = archive_entry_new() else { continue }
            defer { archive_entry_free(entry) }
            archive_entry_set_mtime(entry, 1_700_000_000, 0)
            var data: [UInt8] = []
            switch e {
            case .file(let p, let content):
                archive_entry_copy_pathname(entry, p)
                archive_entry_set_filetype(entry, 0o100000)
                archive_entry_set_perm(entry, 0o644)
                data = Array(content.utf8)
                archive_entry_set_size(entry, Int64(data.count))
            case .dir(let p):
                archive_entry_copy_pathname(entry, p)
                archive_entry_set_filetype(entry, 0o040000)
                archive_entry_set_perm(entry, 0o755)
            case .symlink(let p, let target):
                archive_entry_copy_pathname(entry, p)
                archive_entry_set_filetype(entry, 0o120000)
                archive_entry_copy_symlink(entry, target)
                archive_entry_set_perm(entry, 0o777)
            case .hardlink(let p, let target):
                archive_entry_copy_pathname(entry, p)
                archive_entry_set_filetype(entry, 0o100000)
                archive_entry_copy_hardlink(entry, target)
                archive_entry_set_perm(entry, 0o644)
            }
            archive_write_header(a, entry)
            if !data.isEmpty { _ = data.withUnsafeBytes { archive_write_data(a, $0.baseAddress, $0.count) } }
        }
        archive_write_close(a)
        return path
    }
}
