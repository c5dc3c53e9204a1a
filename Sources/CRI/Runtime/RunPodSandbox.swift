import CRIAPI
import Containers
import Errors
import GRPCCore
import Sandboxes
import SwiftProtobuf

extension RuntimeService {
    /// Boots the pod's VM and returns once its guest agent answers.
    public func runPodSandbox(request: Runtime_V1_RunPodSandboxRequest, context: ServerContext) async throws
        -> Runtime_V1_RunPodSandboxResponse
    {
        try await mapErrors {
            let run = try PodSandboxRequest.validate(request)
            let id = try await sandboxes.run(run)
            var response = Runtime_V1_RunPodSandboxResponse()
            response.podSandboxID = id
            return response
        }
    }
}

/// Checks a RunPodSandbox request and turns it into a `RunRequest`, naming the offending field.
public enum PodSandboxRequest {
    /// VM sizing annotations (per pod), in the spirit of Kata's `io.katacontainers.config.hypervisor.*`.
    public static let vcpusAnnotation = "io.cocoon.vm.vcpus"
    public static let memoryAnnotation = "io.cocoon.vm.memory_mib"

    public static func validate(_ request: Runtime_V1_RunPodSandboxRequest) throws(CocoonError) -> RunRequest {
        guard request.hasConfig else { throw .invalidArgument("config is required") }
        let config = request.config
        guard config.hasMetadata else { throw .invalidArgument("config.metadata is required") }
        let m = config.metadata
        guard !m.name.isEmpty else { throw .invalidArgument("config.metadata.name is required") }
        for (field, value) in [("name", m.name), ("namespace", m.namespace), ("uid", m.uid)] {
            guard value.utf8.count <= 253 else {
                throw .invalidArgument("config.metadata.\(field) is longer than 253 bytes")
            }
            guard !value.contains("/"), !value.contains("\0") else {
                throw .invalidArgument("config.metadata.\(field) \"\(value)\" must not contain '/' or NUL")
            }
        }
        var run = RunRequest(
            metadata: PodMetadata(name: m.name, uid: m.uid, namespace: m.namespace, attempt: m.attempt),
            labels: config.labels, annotations: config.annotations, runtimeHandler: request.runtimeHandler)
        if config.hasLinux, config.linux.hasResources {
            let limit = config.linux.resources.memoryLimitInBytes
            guard limit >= 0 else {
                throw .invalidArgument(
                    "config.linux.resources.memory_limit_in_bytes must not be negative (got \(limit))")
            }
            guard limit <= 1 << 40 else {
                throw .invalidArgument(
                    "config.linux.resources.memory_limit_in_bytes \(limit) is beyond any VM Cocoon can boot")
            }
            // As Kata does: the pod's limit is added to the handler's base VM memory.
            run.extraMemoryMiB = Int((limit + (1 << 20) - 1) >> 20)
        }
        if config.hasLinux {
            run.cgroupParent = config.linux.cgroupParent
            run.sysctls = try Sysctls.validate(config.linux.sysctls)
            let namespaces = config.linux.securityContext.namespaceOptions
            run.hostNetwork = namespaces.network == .node
            run.hostPID = namespaces.pid == .node
            run.hostIPC = namespaces.ipc == .node
        }
        try PodNetworkFields.validate(config, into: &run)
        if let v = config.annotations[vcpusAnnotation] {
            guard let n = Int(v), (1...64).contains(n) else {
                throw .invalidArgument("annotation \(vcpusAnnotation)=\"\(v)\" must be an integer in 1...64")
            }
            run.vcpus = n
        }
        if let v = config.annotations[memoryAnnotation] {
            guard let n = Int(v), (64...262_144).contains(n) else {
                throw .invalidArgument("annotation \(memoryAnnotation)=\"\(v)\" must be an integer in 64...262144")
            }
            run.memoryMiBOverride = n
        }
        do {
            run.configJSON = try config.jsonString()
        } catch {
            throw .invalidArgument("config cannot be encoded as JSON: \(error)", cause: error)
        }
        return run
    }
}
