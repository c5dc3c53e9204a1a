import Config
import Errors
import Sandboxes
import Testing

/// Pod authors size their VM only through what the handler enables, and never past its maxima.
@Suite struct VMSizingTests {
    func request(_ annotations: [String: String], vcpus: Int? = nil, memory: Int? = nil, extra: Int = 0) -> RunRequest {
        RunRequest(
            metadata: PodMetadata(name: "p", uid: "u", namespace: "n", attempt: 0), annotations: annotations,
            vcpus: vcpus, extraMemoryMiB: extra, memoryMiBOverride: memory)
    }

    @Test func enabledAnnotationsSizeTheVMWithinTheMaxima() throws {
        var handler = RuntimeHandler(backend: .qemu)
        handler.maxVcpus = 4
        handler.maxMemoryMiB = 2048
        let size = try VMSizing.resolve(
            request(["io.cocoon.vm.vcpus": "4", "io.cocoon.vm.memory_mib": "2048"], vcpus: 4, memory: 2048),
            handler: handler, handlerName: "cocoon")
        #expect(size.vcpus == 4 && size.memoryMiB == 2048 && size.ignored.isEmpty)
        let tooMany = #expect(throws: CocoonError.self) {
            _ = try VMSizing.resolve(request(["io.cocoon.vm.vcpus": "5"], vcpus: 5), handler: handler, handlerName: "h")
        }
        #expect(tooMany?.code == .invalidArgument && tooMany?.message.contains("max_vcpus 4") == true)
        let tooBig = #expect(throws: CocoonError.self) {
            _ = try VMSizing.resolve(request([:], extra: 4096), handler: handler, handlerName: "h")
        }
        #expect(tooBig?.code == .invalidArgument && tooBig?.message.contains("memory_limit_in_bytes") == true)
    }

    @Test func annotationsTheHandlerDoesNotEnableAreIgnored() throws {
        var handler = RuntimeHandler(backend: .qemu)
        handler.enableAnnotations = ["memory_mib"]
        let size = try VMSizing.resolve(
            request(
                ["io.cocoon.vm.vcpus": "64", "io.cocoon.vm.memory_mib": "512", "io.cocoon.vm.hugepages": "1"],
                vcpus: 64, memory: 512),
            handler: handler, handlerName: "cocoon")
        #expect(size.vcpus == handler.vcpus && size.memoryMiB == 512)
        #expect(size.ignored == ["io.cocoon.vm.hugepages", "io.cocoon.vm.vcpus"])
    }

    @Test func theConfigNamesWhichAnnotationsAndMaxima() throws {
        let config = try ConfigLoader.parse(
            """
            [handlers.untrusted]
            backend = "qemu"
            enable_annotations = []
            max_vcpus = 2
            max_memory_mib = 1024
            """)
        let h = try #require(config.handlers["untrusted"])
        #expect(h.enableAnnotations.isEmpty && h.maxVcpus == 2 && h.maxMemoryMiB == 1024)
        #expect(throws: ConfigError.self) {
            _ = try ConfigLoader.parse("[handlers.x]\nbackend = \"qemu\"\nenable_annotations = [\"kernel_params\"]\n")
        }
    }
}
