import Config
import Foundation
import Models
import Testing
import Yams

/// docs/kubernetes.md, read as a kubelet admin would use it: its kubelet flags are the kubelet's own
/// (the flag list of its reference page), its KubeletConfiguration keys are fields of that type and
/// point at cocoond's socket, its TOML is a configuration cocoond accepts, and each RuntimeClass
/// names a VM handler of that configuration, with an overhead and a node selector.
@Suite struct KubernetesDocTests {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    /// The page's fenced blocks: (language, text).
    static func blocks() throws -> [(String, String)] {
        let page = try String(contentsOfFile: repo + "/docs/kubernetes.md", encoding: .utf8)
        var out: [(String, String)] = []
        var language: String?
        var lines: [String] = []
        for line in page.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
            if line.hasPrefix("```") {
                if let open = language {
                    out.append((open, lines.joined(separator: "\n")))
                    language = nil
                } else {
                    language = String(line.dropFirst(3))
                    lines = []
                }
            } else if language != nil {
                lines.append(line)
            }
        }
        return out
    }

    static func fixture(_ name: String) throws -> Set<String> {
        let text = try String(contentsOfFile: repo + "/Tests/Fixtures/" + name, encoding: .utf8)
        return Set(text.split(separator: "\n").map(String.init).filter { !$0.hasPrefix("#") })
    }

    static func nodeConfig() throws -> CocoonConfig {
        let toml = try blocks().filter { $0.0 == "toml" }
        try #require(toml.count == 1)
        return try ConfigLoader.parse(toml[0].1, source: "docs/kubernetes.md")
    }

    @Test func theKubeletFlagsAreTheKubeletsOwn() throws {
        let flags = try Self.fixture("kubelet-flags.txt")
        #expect(flags.contains("--container-runtime-endpoint") && flags.count > 100)
        let kubeletLines = try Self.blocks().filter { $0.0 == "sh" }.flatMap { $0.1.split(separator: "\n") }
            .filter { $0.contains("KUBELET") || $0.hasPrefix("kubelet ") }
        let used = kubeletLines.flatMap { line in
            line.split(whereSeparator: { $0 == " " || $0 == "\"" }).filter { $0.hasPrefix("--") }
                .map { String($0.split(separator: "=")[0]) }
        }
        #expect(used.count >= 4, "\(used)")
        for flag in used { #expect(flags.contains(flag), "\(flag) is not a kubelet flag") }
        let socket = "unix://" + (try Self.nodeConfig().socket)
        #expect(kubeletLines.joined().contains("--container-runtime-endpoint=" + socket))
    }

    @Test func theKubeletConfigurationIsTheKubeletsOwn() throws {
        let fields = try Self.fixture("kubelet-config-fields.txt")
        let documents = try Self.blocks().filter { $0.0 == "yaml" }.flatMap { try Yams.load_all(yaml: $0.1).map { $0 } }
        let kubelet = documents.compactMap { $0 as? [String: Any] }.filter {
            $0["kind"] as? String == "KubeletConfiguration"
        }
        try #require(kubelet.count == 1)
        let config = kubelet[0]
        #expect(config["apiVersion"] as? String == "kubelet.config.k8s.io/v1beta1")
        for key in config.keys where key != "apiVersion" && key != "kind" {
            #expect(fields.contains(key), "\(key) is not a KubeletConfiguration field")
        }
        let socket = "unix://" + (try Self.nodeConfig().socket)
        #expect(config["containerRuntimeEndpoint"] as? String == socket)
        #expect(config["imageServiceEndpoint"] as? String == socket)
        #expect(["systemd", "cgroupfs"].contains(config["cgroupDriver"] as? String ?? ""))
    }

    @Test func eachRuntimeClassNamesAVMHandler() throws {
        let node = try Self.nodeConfig()
        #expect(node.handlers[node.defaultHandler]?.backend == .native, "pods without a RuntimeClass run natively")
        let documents = try Self.blocks().filter { $0.0 == "yaml" }.flatMap { try Yams.load_all(yaml: $0.1).map { $0 } }
        let classes = documents.compactMap { $0 as? [String: Any] }.filter { $0["kind"] as? String == "RuntimeClass" }
        let vmHandlers = node.handlers.filter { $0.value.backend.isVM }.keys.sorted()
        #expect(Set(classes.compactMap { $0["handler"] as? String }) == Set(vmHandlers), "one per shipped VM handler")
        for runtimeClass in classes {
            let name = (runtimeClass["metadata"] as? [String: Any])?["name"] as? String ?? ""
            #expect(runtimeClass["apiVersion"] as? String == "node.k8s.io/v1")
            #expect(
                name.range(of: "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", options: .regularExpression) != nil
                    && name.count <= 63)
            let podFixed = ((runtimeClass["overhead"] as? [String: Any])?["podFixed"] as? [String: Any]) ?? [:]
            #expect(podFixed["memory"] is String && podFixed["cpu"] is String, "\(name): overhead.podFixed")
            let selector = ((runtimeClass["scheduling"] as? [String: Any])?["nodeSelector"] as? [String: Any]) ?? [:]
            #expect(!selector.isEmpty, "\(name): scheduling.nodeSelector")
        }
    }
}
