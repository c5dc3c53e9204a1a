import CRI
import CRIAPI
import Testing

@Suite struct RequestValidationTests {
    func request(_ edit: (inout Runtime_V1_RunPodSandboxRequest) -> Void) -> Runtime_V1_RunPodSandboxRequest {
        var r = Runtime_V1_RunPodSandboxRequest()
        r.config.metadata.name = "p"
        r.config.metadata.namespace = "ns"
        r.config.metadata.uid = "u"
        edit(&r)
        return r
    }

    @Test func acceptsAPlainPod() throws {
        let run = try PodSandboxRequest.validate(
            request {
                $0.runtimeHandler = "fast"
                $0.config.labels = ["a": "b"]
            })
        #expect(run.metadata.reservedName == "p_ns_u_0")
        #expect(run.runtimeHandler == "fast" && run.labels == ["a": "b"])
        #expect(run.extraMemoryMiB == 0 && run.vcpus == nil)
    }

    @Test func podLimitsAndAnnotationsSizeTheVM() throws {
        let run = try PodSandboxRequest.validate(
            request {
                $0.config.linux.resources.memoryLimitInBytes = 100 << 20
                $0.config.annotations = [
                    PodSandboxRequest.vcpusAnnotation: "2", PodSandboxRequest.memoryAnnotation: "512",
                ]
            })
        #expect(run.extraMemoryMiB == 100 && run.vcpus == 2 && run.memoryMiBOverride == 512)
    }

    @Test(arguments: [
        ("no config", "config is required"),
        ("no metadata", "config.metadata is required"),
        ("no name", "config.metadata.name is required"),
        ("slash", "must not contain"),
        ("negative memory", "memory_limit_in_bytes"),
        ("absurd memory", "memory_limit_in_bytes"),
        ("bad vcpus", PodSandboxRequest.vcpusAnnotation),
        ("bad memory annotation", PodSandboxRequest.memoryAnnotation),
    ])
    func rejects(name: String, expected: String) {
        let r: Runtime_V1_RunPodSandboxRequest
        switch name {
        case "no config": r = Runtime_V1_RunPodSandboxRequest()
        case "no metadata":
            r = request {
                $0.config.clearMetadata()
                $0.config.hostname = "x"
            }
        case "no name": r = request { $0.config.metadata.name = "" }
        case "slash": r = request { $0.config.metadata.namespace = "a/b" }
        case "negative memory": r = request { $0.config.linux.resources.memoryLimitInBytes = -1 }
        case "absurd memory": r = request { $0.config.linux.resources.memoryLimitInBytes = Int64.max }
        case "bad vcpus": r = request { $0.config.annotations = [PodSandboxRequest.vcpusAnnotation: "1000"] }
        default: r = request { $0.config.annotations = [PodSandboxRequest.memoryAnnotation: "lots"] }
        }
        do {
            _ = try PodSandboxRequest.validate(r)
            Issue.record("accepted: \(name)")
        } catch {
            #expect(error.rpcError.code == .invalidArgument)
            #expect(error.rpcError.message.contains(expected), "\(error.rpcError.message)")
        }
    }
}
