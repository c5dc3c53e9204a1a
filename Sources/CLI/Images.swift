import ArgumentParser
import CRIAPI
import CocoonAPI
import Foundation
import GRPCCore
import Models
import Spawn

/// `cocoonctl pull`: PullImage, with a progress bar per layer drawn from ImageStatus (verbose)
/// while the pull runs (cocoond reports live progress there; other runtimes simply show none).
struct Pull: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Pull an image from a registry.")
    @OptionGroup var global: GlobalOptions
    @Option(help: "Registry credentials USER:PASSWORD.") var creds: String = ""
    @Option(help: "Registry credentials as base64(USER:PASSWORD).") var auth: String = ""
    @Flag(help: "Never draw progress bars (default: only on a terminal).") var noProgress = false
    @Argument(help: "Image reference, e.g. busybox, 127.0.0.1:5000/app:v1, name@sha256:….") var image: String

    func validate() throws {
        if !creds.isEmpty && !creds.contains(":") { throw ValidationError("--creds must be USER:PASSWORD") }
    }

    func run() async throws {
        var request = Runtime_V1_PullImageRequest()
        request.image.image = image
        if !creds.isEmpty, let colon = creds.firstIndex(of: ":") {
            request.auth.username = String(creds[..<colon])
            request.auth.password = String(creds[creds.index(after: colon)...])
        }
        if !auth.isEmpty { request.auth.auth = auth }
        let drawProgress = !noProgress && isatty(STDERR_FILENO) == 1
        let options = global.callOptions()
        let image = self.image
        let pullRequest = request
        try await runCLI {
            let ref = try await global.endpoint().withClients { _, img in
                try await withThrowingTaskGroup(of: String?.self) { group in
                    group.addTask { try await img.pullImage(pullRequest, options: options).imageRef }
                    if drawProgress {
                        group.addTask {
                            var bars = ProgressBars()
                            var status = Runtime_V1_ImageStatusRequest()
                            status.image.image = image
                            status.verbose = true
                            while !Task.isCancelled {
                                // try?: cancellation ends the progress display
                                try? await Task.sleep(for: .milliseconds(250))
                                // try?: progress is best effort; the pull reports errors
                                guard let s = try? await img.imageStatus(status), !s.hasImage else { continue }
                                if let json = s.info["pullProgress"] { bars.draw(json) }
                            }
                            bars.finish()
                            return nil
                        }
                    }
                    var result = ""
                    for try await r in group {
                        if let r {
                            result = r
                            group.cancelAll()
                        }
                    }
                    return result
                }
            }
            print("Image is up to date for \(ref)")
        }
    }
}

/// Draws one line per layer on stderr, redrawn in place: digest, bar, bytes, rate.
struct ProgressBars {
    private var lines = 0
    private var lastBytes: Int64 = 0
    private var lastTime = ContinuousClock.now
    private var rate = 0.0

    struct Snapshot: Decodable {
        struct Layer: Decodable {
            var digest: String
            var total: Int64
            var done: Int64
        }
        var phase: String
        var layers: [Layer]
    }

    mutating func draw(_ json: String) {
        // try?: no progress to draw
        guard let s = try? JSONDecoder().decode(Snapshot.self, from: Data(json.utf8)) else { return }
        let done = s.layers.reduce(0) { $0 + $1.done }
        let now = ContinuousClock.now
        let dt = (now - lastTime).seconds
        if dt > 0.2 {
            rate = Double(done - lastBytes) / dt
            lastBytes = done
            lastTime = now
        }
        var out = lines > 0 ? "\u{1B}[\(lines)A" : ""
        for l in s.layers {
            out += "\u{1B}[2K" + Self.line(l.digest, done: l.done, total: l.total) + "\n"
        }
        out += "\u{1B}[2K\(s.phase)  \(Self.mb(done)) MB  \(String(format: "%.1f", max(0, rate) / 1e6)) MB/s\n"
        lines = s.layers.count + 1
        FileHandle.standardError.write(Data(out.utf8))
    }

    func finish() {}

    static func line(_ digest: String, done: Int64, total: Int64) -> String {
        let width = 30
        let fraction = total > 0 ? min(1, Double(done) / Double(total)) : 0
        let filled = Int(fraction * Double(width))
        let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
        let short = digest.hasPrefix("sha256:") ? String(digest.dropFirst(7).prefix(12)) : String(digest.prefix(12))
        return "\(short)  [\(bar)] \(mb(done))/\(mb(total)) MB"
    }

    static func mb(_ bytes: Int64) -> String { String(format: "%.1f", Double(bytes) / 1e6) }
}

/// `cocoonctl images`: list images as crictl does (IMAGE, TAG, IMAGE ID, SIZE).
struct ImagesList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "images", abstract: "List images.")
    @OptionGroup var global: GlobalOptions
    @Option(name: .shortAndLong, help: "Output format: table, json or yaml.") var output: String = "table"
    @Flag(name: .shortAndLong, help: "Only print image IDs.") var quiet = false
    @Flag(help: "Show digests.") var digests = false
    @Flag(help: "Do not truncate IDs.") var noTrunc = false
    @Argument(help: "Only this image (reference or id).") var image: String?

    func validate() throws {
        guard OutputFormat(rawValue: output) != nil else {
            throw ValidationError("--output must be table, json or yaml")
        }
    }

    func run() async throws {
        try await runCLI {
            var request = Runtime_V1_ListImagesRequest()
            if let image { request.filter.image.image = image }
            let response = try await global.endpoint().withClients { _, img in
                try await img.listImages(request, options: global.callOptions())
            }
            if quiet {
                response.images.forEach { print($0.id) }
                return
            }
            switch OutputFormat(rawValue: output) ?? .table {
            case .json: print(try Render.json(response))
            case .yaml: print(try Render.yaml(response))
            case .table: print(ImageTable.render(response.images, digests: digests, noTrunc: noTrunc))
            }
        }
    }
}

/// The `images` table: one row per tag (or one `<none>` row for an untagged image).
public enum ImageTable {
    public static func render(_ images: [Runtime_V1_Image], digests: Bool, noTrunc: Bool) -> String {
        var rows: [[String]] = []
        for i in images {
            let id = i.id.hasPrefix("sha256:") ? String(i.id.dropFirst(7)) : i.id
            let shortID = noTrunc ? i.id : String(id.prefix(13))
            let digest = i.repoDigests.first.flatMap { $0.split(separator: "@").last.map(String.init) } ?? "<none>"
            let names: [(String, String)] =
                i.repoTags.isEmpty
                ? [(i.repoDigests.first.map { String($0.split(separator: "@")[0]) } ?? "<none>", "<none>")]
                : i.repoTags.map(splitTag)
            for (repo, tag) in names {
                var row = [repo, tag]
                if digests { row.append(noTrunc ? digest : String(digest.prefix(20))) }
                row += [shortID, humanSize(i.size)]
                rows.append(row)
            }
        }
        var header = ["IMAGE", "TAG"]
        if digests { header.append("DIGEST") }
        header += ["IMAGE ID", "SIZE"]
        return Render.table(header, rows)
    }

    static func splitTag(_ ref: String) -> (String, String) {
        guard let colon = ref.lastIndex(of: ":"), !ref[colon...].contains("/") else { return (ref, "<none>") }
        return (String(ref[..<colon]), String(ref[ref.index(after: colon)...]))
    }

    public static func humanSize(_ bytes: UInt64) -> String {
        let b = Double(bytes)
        if b >= 1e9 { return String(format: "%.3gGB", b / 1e9) }
        if b >= 1e6 { return String(format: "%.3gMB", b / 1e6) }
        if b >= 1e3 { return String(format: "%.3gkB", b / 1e3) }
        return "\(bytes)B"
    }
}

/// `cocoonctl rmi`: RemoveImage by tag, digest or id.
struct RemoveImage: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rmi", abstract: "Remove images (by tag, digest or id).")
    @OptionGroup var global: GlobalOptions
    @Flag(name: .shortAndLong, help: "Remove all images.") var all = false
    @Argument(help: "Images (reference or id).") var images: [String] = []

    func validate() throws {
        if images.isEmpty && !all { throw ValidationError("give at least one image, or --all") }
    }

    func run() async throws {
        try await runCLI {
            try await global.endpoint().withClients { _, img in
                var targets = images
                if all {
                    targets = try await img.listImages(Runtime_V1_ListImagesRequest(), options: global.callOptions())
                        .images.map(\.id)
                }
                for name in targets {
                    var request = Runtime_V1_RemoveImageRequest()
                    request.image.image = name
                    _ = try await img.removeImage(request, options: global.callOptions())
                    print("Deleted: \(name)")
                }
            }
        }
    }
}

/// `cocoonctl inspecti`: ImageStatus (verbose), with the image config.
struct InspectImage: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspecti", abstract: "Show an image's status and config.")
    @OptionGroup var global: GlobalOptions
    @Option(name: .shortAndLong, help: "Output format: json or yaml.") var output: String = "json"
    @Argument(help: "Images (reference or id).") var images: [String]

    func validate() throws {
        if images.isEmpty { throw ValidationError("give at least one image") }
        guard output == "json" || output == "yaml" else { throw ValidationError("--output must be json or yaml") }
    }

    func run() async throws {
        try await runCLI {
            try await global.endpoint().withClients { _, img in
                for name in images {
                    var request = Runtime_V1_ImageStatusRequest()
                    request.image.image = name
                    request.verbose = true
                    let status = try await img.imageStatus(request, options: global.callOptions())
                    guard status.hasImage else { throw CLIError("no such image: \(name)") }
                    print(output == "yaml" ? try Render.yaml(status) : try Render.json(status))
                }
            }
        }
    }
}

/// `cocoonctl image import FILE`: load an OCI layout (directory or tar) or a `docker save` tarball
/// into cocoond's image store, for nodes without registry access.
struct ImageGroup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "image", abstract: "Image archive commands.", subcommands: [ImportImage.self])
}

struct ImportImage: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import", abstract: "Import an OCI layout or docker save tarball on this node.")
    @OptionGroup var global: GlobalOptions
    @Option(help: "Name (REPO[:TAG]) for images the archive does not name fully.") var name: String?
    @Argument(help: "OCI image layout directory, a tar of one, or a docker save tarball.") var file: String

    func run() async throws {
        let path = file.hasPrefix("/") ? file : FileManager.default.currentDirectoryPath + "/" + file
        try await runCLI {
            let response = try await global.endpoint().importImage(
                .init(path: path, name: name), options: global.callOptions())
            for image in response.images {
                print("Imported \(image.names.first ?? "") \(image.id)")
            }
        }
    }
}
