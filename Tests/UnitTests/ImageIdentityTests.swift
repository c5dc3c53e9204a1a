import Config
import Errors
import Foundation
import Images
import Testing

/// Issue 27: an image is what its digests say. Every layer's uncompressed bytes are checked against
/// the config's diff ids, trees are keyed by chain id, and a tree unpacked before that check is not
/// trusted.
@Suite(.serialized)
struct ImageIdentityTests {
    /// The layer check itself: gzip and plain layers hash to their diff id; a layer that does not is
    /// refused with both digests named.
    @Test func aLayerMustHashToItsDiffID() throws {
        let dir = try scratchDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let entries: [TarFixture.Entry] = [.dir("etc"), .file("etc/whoami", "genuine\n")]
        let plain = try TarFixture.write(dir + "/l.tar", gzip: false, entries)
        let gzip = try TarFixture.write(dir + "/l.tar.gz", gzip: true, entries)
        let diffID = Digest.of(try Array(Data(contentsOf: URL(fileURLWithPath: plain))))
        for layer in [plain, gzip] {
            let root = dir + "/root-" + URL(fileURLWithPath: layer).lastPathComponent
            try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
            let stats = try LayerUnpacker(root: root).apply(layerAt: layer, diffID: diffID)
            #expect(stats.diffID == diffID, "\(layer)")
        }
        let other = Digest.of(Array("another layer".utf8))
        try FileManager.default.createDirectory(atPath: dir + "/bad", withIntermediateDirectories: true)
        let refused = #expect(throws: CocoonError.self) {
            try LayerUnpacker(root: dir + "/bad").apply(layerAt: gzip, name: "2 of 2", diffID: other)
        }
        #expect(refused?.code == .dataLoss)
        #expect(refused?.message.contains(diffID.description) == true && refused?.message.contains("2 of 2") == true)
    }

    /// A record and tree from before the check (keyed by config digest, no chain id) whose tree was
    /// swapped for other files: the next daemon does not use it, it unpacks the stored blobs again,
    /// checked, under the chain id, and removes the old tree and block image.
    @Test func aTreeUnpackedBeforeTheCheckIsUnpackedAgain() async throws {
        let dir = try scratchDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let layout = try OCILayoutFixture.write(dir + "/layout", files: ["whoami.txt": "genuine\n"])
        let state = dir + "/state"
        let first = try ImageManager(stateRoot: state, registry: RegistrySettings())
        let record = try #require(try await first.importImage(path: layout.path, name: "local/genuine:1").first)
        #expect(record.chainID == layout.chainID)
        #expect(record.rootfs == state + "/images/rootfs/" + layout.chainID.hex)
        await first.shutdown()

        // What a pre-check daemon left: the tree under the config digest, here holding other files.
        let legacy = state + "/images/rootfs/" + record.id.hex
        try FileManager.default.createDirectory(atPath: legacy, withIntermediateDirectories: true)
        try "impostor\n".write(toFile: legacy + "/whoami.txt", atomically: true, encoding: .utf8)
        try "not an image".write(toFile: legacy + ".erofs", atomically: true, encoding: .utf8)
        let metadata = state + "/images/metadata/" + record.id.hex + ".json"
        var json = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: metadata))) as? [String: Any])
        json["chainID"] = nil
        json["rootfs"] = legacy
        try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: metadata))

        let second = try ImageManager(stateRoot: state, registry: RegistrySettings())
        let image = try await second.blockImage(for: record.id)
        let tree = state + "/images/rootfs/" + layout.chainID.hex
        #expect(image == tree + ".erofs")
        #expect((try? String(contentsOfFile: tree + "/whoami.txt", encoding: .utf8)) == "genuine\n")
        #expect(!FileManager.default.fileExists(atPath: legacy), "the unchecked tree is gone")
        #expect(!FileManager.default.fileExists(atPath: legacy + ".erofs"))
        #expect(await second.find(record.id.description)?.chainID == layout.chainID)
        await second.shutdown()
    }

    @Test func chainIDFollowsTheOCIDefinition() throws {
        let a = Digest.of(Array("a".utf8)), b = Digest.of(Array("b".utf8))
        #expect(ChainID.of([a]) == a)
        #expect(ChainID.of([a, b]) == Digest.of(Array((a.description + " " + b.description).utf8)))
        #expect(ChainID.of([]) == nil)
    }
}

/// A one-layer OCI image layout (gzip layer, config, manifest, index) written by the test.
enum OCILayoutFixture {
    struct Written {
        var path: String
        var chainID: Digest
    }

    static func write(_ path: String, files: [String: String]) throws -> Written {
        let blobs = path + "/blobs/sha256"
        try FileManager.default.createDirectory(atPath: blobs, withIntermediateDirectories: true)
        let entries = files.sorted { $0.key < $1.key }.map { TarFixture.Entry.file($0.key, $0.value) }
        let tar = try TarFixture.write(path + "/layer.tar", gzip: false, entries)
        let gz = try TarFixture.write(path + "/layer.tar.gz", gzip: true, entries)
        let diffID = Digest.of(try Array(Data(contentsOf: URL(fileURLWithPath: tar))))
        let layer = try Array(Data(contentsOf: URL(fileURLWithPath: gz)))
        unlink(tar)
        unlink(gz)
        func put(_ bytes: [UInt8]) throws -> (String, Int) {
            let d = Digest.of(bytes)
            try Data(bytes).write(to: URL(fileURLWithPath: blobs + "/" + d.hex))
            return (d.description, bytes.count)
        }
        let (layerDigest, layerSize) = try put(layer)
        let config =
            #"{"architecture":"amd64","os":"linux","config":{"Cmd":["sh"]},"#
            + #""rootfs":{"type":"layers","diff_ids":[""# + diffID.description + #""]}}"#
        let (configDigest, configSize) = try put(Array(config.utf8))
        let manifest =
            #"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","#
            + #""config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":""# + configDigest
            + #"","size":\#(configSize)},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","#
            + #""digest":""# + layerDigest + #"","size":\#(layerSize)}]}"#
        let (manifestDigest, manifestSize) = try put(Array(manifest.utf8))
        let index =
            #"{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","#
            + #""digest":""# + manifestDigest + #"","size":\#(manifestSize)}]}"#
        try index.write(toFile: path + "/index.json", atomically: true, encoding: .utf8)
        try #"{"imageLayoutVersion":"1.0.0"}"#.write(toFile: path + "/oci-layout", atomically: true, encoding: .utf8)
        return Written(path: path, chainID: diffID)
    }
}
