import AgentClient
import CRIAPI
import ContainerCore
import Containers
import Errors
import Foundation
import GRPCCore
import Images
import Models
import Sandboxes

extension RuntimeService {
    /// Resolves the image (it must have been pulled), merges its config with the request, hot-plugs
    /// the image's EROFS disk into the pod VM and has the agent prepare the container.
    public func createContainer(request: Runtime_V1_CreateContainerRequest, context: ServerContext) async throws
        -> Runtime_V1_CreateContainerResponse
    {
        try await mapErrors {
            guard !request.podSandboxID.isEmpty else { throw CocoonError.invalidArgument("pod_sandbox_id is required") }
            let config = request.config
            guard !config.metadata.name.isEmpty else {
                throw CocoonError.invalidArgument("config.metadata.name is required")
            }
            guard !config.image.image.isEmpty else {
                throw CocoonError.invalidArgument("config.image.image is required")
            }
            guard let image = await images.find(config.image.image) else {
                throw CocoonError.notFound("image \"\(config.image.image)\" not found: pull it first")
            }
            let rootfsImage = try await images.blockImage(for: image.id)
            let imageConfig = try images.config(of: image.id)
            let process = try Self.processSpec(config, imageConfig: imageConfig)
            let security = config.linux.securityContext

            var create = ContainerManager.CreateRequest(
                sandboxID: request.podSandboxID, name: config.metadata.name, attempt: config.metadata.attempt,
                image: config.image.image, imageID: image.idString, rootfsImage: rootfsImage, process: process)
            create.imageRef = image.repoDigests.first
            create.hostname = request.sandboxConfig.hostname
            create.readOnlyRootfs = security.readonlyRootfs
            create.paths = try ContainerArgs.paths(security)
            create.allDevices = security.privileged
            create.pidNamespace = try await pidNamespace(security.namespaceOptions, pod: request.podSandboxID)
            create.mounts = try ContainerVolumes.mounts(config.mounts)
            let r = config.linux.resources
            create.resources = ResourceLimits(
                memoryLimitBytes: r.memoryLimitInBytes, cpuQuotaMicros: r.cpuQuota, cpuPeriodMicros: r.cpuPeriod,
                cpuShares: r.cpuShares,
                pidsLimit: self.config.containers.pidsLimit)
            create.labels = config.labels
            create.annotations = config.annotations
            if let logPath = try Self.logPath(config, sandboxConfig: request.sandboxConfig) {
                create.logPath = logPath
            }
            create.stopSignal = ContainerTranslation.signalNumber(imageConfig?.StopSignal)
            create.configJSON = try config.jsonString()
            create.stdio = .init(stdin: config.stdin, stdinOnce: config.stdinOnce, tty: config.tty)
            var response = Runtime_V1_CreateContainerResponse()
            response.containerID = try await containers.create(create)
            return response
        }
    }

    /// The container's process: the image's entrypoint, environment and user merged with the request's.
    private static func processSpec(_ config: Runtime_V1_ContainerConfig, imageConfig: ImageConfig.Config?) throws
        -> ProcessSpec
    {
        let args: [String]
        do {
            args = try ProcessArguments.merge(
                entrypoint: imageConfig?.Entrypoint ?? [], cmd: imageConfig?.Cmd ?? [], command: config.command,
                args: config.args)
        } catch {
            throw CocoonError.invalidArgument("\(error)")
        }
        let security = config.linux.securityContext
        return ProcessSpec(
            args: args,
            env: ProcessArguments.mergeEnvironment(
                image: imageConfig?.Env ?? [], container: config.envs.map { "\($0.key)=\($0.value)" }),
            workingDir: config.workingDir.isEmpty ? (imageConfig?.WorkingDir ?? "") : config.workingDir,
            user: try ContainerArgs.user(security, imageUser: imageConfig?.User ?? ""),
            capabilities: try ContainerArgs.capabilities(security), noNewPrivileges: security.noNewPrivs,
            seccomp: try ContainerArgs.seccomp(security))
    }

    /// The container's PID namespace: CONTAINER its own, POD the pod's, NODE the node's (native
    /// handlers only, as for a pod), TARGET another container's of the pod (`target_id`).
    private func pidNamespace(_ options: Runtime_V1_NamespaceOption, pod: String) async throws -> PIDNamespaceMode {
        switch options.pid {
        case .container: return .own
        case .pod: return .pod
        case .node:
            let record = try await sandboxes.status(pod)
            let name = record.runtimeHandler.isEmpty ? config.defaultHandler : record.runtimeHandler
            if let handler = config.handlers[name], handler.backend.isVM {
                throw CocoonError.invalidArgument(
                    SandboxManager.hostNamespaceRefusal("pid", name, natives: config.handlers))
            }
            return .node
        case .target:
            guard !options.targetID.isEmpty else {
                throw CocoonError.invalidArgument(
                    "config.linux.security_context.namespace_options.target_id is required with pid TARGET")
            }
            return .target(options.targetID)
        case .UNRECOGNIZED(let value):
            throw CocoonError.invalidArgument(
                "config.linux.security_context.namespace_options.pid \(value) is not a namespace mode")
        }
    }

    /// The absolute log path the kubelet asks for (relative ones join the sandbox's log directory), or nil for none.
    private static func logPath(_ config: Runtime_V1_ContainerConfig, sandboxConfig: Runtime_V1_PodSandboxConfig)
        throws -> String?
    {
        guard !config.logPath.isEmpty else { return nil }
        let dir = sandboxConfig.logDirectory
        guard !dir.isEmpty || config.logPath.hasPrefix("/") else {
            throw CocoonError.invalidArgument(
                "config.log_path \"\(config.logPath)\" is relative but sandbox_config.log_directory is empty")
        }
        let path = config.logPath.hasPrefix("/") ? config.logPath : dir + "/" + config.logPath
        guard !path.split(separator: "/").contains("..") else {
            throw CocoonError.invalidArgument("config.log_path must not contain \"..\"")
        }
        return path
    }
}
