import AgentAPI
import Foundation
import Models

// The only place where the host's agent values become agent API messages and back.

extension Cocoon_Agent_V4_Process {
    init(_ p: ProcessSpec) {
        self.init()
        args = p.args
        env = p.env
        workingDir = p.workingDir
        user = .with {
            if let uid = p.user.uid { $0.uid = uid }
            $0.username = p.user.username ?? ""
            if let gid = p.user.gid { $0.gid = gid }
            $0.groupname = p.user.groupname ?? ""
            $0.supplementaryGroups = p.user.supplementaryGroups
        }
        capabilities = p.capabilities.sorted().map(\.description)
        noNewPrivileges = p.noNewPrivileges
        seccomp = .with {
            switch p.seccomp {
            case .unconfined: $0.kind = .unconfined
            case .runtimeDefault: $0.kind = .runtimeDefault
            case .json(let json):
                $0.kind = .profile
                $0.profile = json
            }
        }
    }
}

extension Cocoon_Agent_V4_Resources {
    init(_ r: ResourceLimits) {
        self.init()
        memoryLimitBytes = r.memoryLimitBytes
        cpuQuotaMicros = r.cpuQuotaMicros
        cpuPeriodMicros = r.cpuPeriodMicros
        cpuShares = r.cpuShares
        pidsLimit = r.pidsLimit
    }
}

extension Cocoon_Agent_V4_CreateContainerRequest {
    init(_ spec: ContainerCreateSpec) {
        self.init()
        id = spec.id
        imageDiskSerial = spec.imageDiskSerial
        process = .init(spec.process)
        hostname = spec.hostname
        readOnlyRootfs = spec.readOnlyRootfs
        stdin = spec.stdin
        tty = spec.tty
        allDevices = spec.allDevices
        logPath = spec.logPath
        switch spec.pidNamespace {
        case .own: pidNamespace = .pidOwn
        case .pod: pidNamespace = .pidPod
        case .node: pidNamespace = .pidNode
        case .target(let id):
            pidNamespace = .pidTarget
            pidTargetID = id
        }
        if let paths = spec.paths {
            customPaths = true
            maskedPaths = paths.masked
            readonlyPaths = paths.readonly
        }
        mounts = spec.mounts.map { m in
            .with {
                $0.destination = m.destination
                $0.readOnly = m.readOnly
                $0.entries = m.entries.map { e in
                    .with {
                        $0.path = e.path
                        $0.mode = e.mode
                        $0.data = e.data
                    }
                }
            }
        }
        sharedMounts = spec.sharedMounts.map { m in
            .with {
                $0.name = m.name
                $0.destination = m.destination
                $0.readOnly = m.readOnly
            }
        }
        resources = .init(spec.resources)
    }
}

extension GuestHealth {
    init(_ h: Cocoon_Agent_V4_HealthResponse) {
        self.init(
            apiVersion: h.apiVersion, agentVersion: h.agentVersion, kernelRelease: h.kernelRelease,
            transport: h.boot.transport,
            agentStartedNs: h.boot.agentStartedNs, channelOpenNs: h.boot.channelOpenNs, memTotalKiB: h.memTotalKib)
    }
}

extension ContainerUsage {
    init(_ s: Cocoon_Agent_V4_ContainerStatusResponse) {
        self.init(
            cpuUsageNs: s.cpuUsageNs, memoryBytes: s.memoryBytes, memoryWorkingSetBytes: s.memoryWorkingSetBytes,
            pids: s.pids)
    }
}

extension AgentEvent {
    /// Nil for events the host does not act on (Hello is kept by the client itself), and for those
    /// naming ids longer than any the host gives (`GuestText.maxID`): they match nothing.
    init?(_ e: Cocoon_Agent_V4_Event) {
        let ids: [String]
        switch e.kind {
        case .output(let o)?: ids = [o.containerID, o.execID]
        case .exit(let x)?: ids = [x.containerID, x.execID]
        default: ids = []
        }
        guard ids.allSatisfy({ $0.utf8.count <= GuestText.maxID }) else { return nil }
        switch e.kind {
        case .output(let o)?:
            self = .output(
                containerID: o.containerID, execID: o.execID, stream: o.stream == .stderr ? .stderr : .stdout,
                data: [UInt8](o.data))
        case .exit(let x)?:
            self = .exit(
                containerID: x.containerID, execID: x.execID, exitCode: x.exitCode, oomKilled: x.oomKilled,
                exitedAtNs: x.exitedAtNs)
        case .portData(let d)?:
            self = .portData(connection: d.connectionID, data: [UInt8](d.data))
        case .portClosed(let c)?:
            self = .portClosed(connection: c.connectionID, error: GuestText.printable(c.error, max: 1024))
        default:
            return nil
        }
    }
}

extension AgentClientError.Refusal {
    init(_ code: Cocoon_Agent_V4_AgentError.Code) {
        switch code {
        case .invalidArgument: self = .invalidArgument
        case .notFound: self = .notFound
        case .failedPrecondition: self = .failedPrecondition
        case .unimplemented: self = .unimplemented
        case .internal: self = .internalError
        default: self = .unknown
        }
    }
}

extension Cocoon_Agent_V4_ConfigurePodRequest {
    init(_ c: PodConfiguration) {
        self.init()
        sysctls = c.sysctls
        if let i = c.interface {
            interface = .with { nic in
                nic.mac = i.mac
                nic.mtu = UInt32(clamping: i.mtu)
                nic.addresses = i.addresses
                nic.routes = i.routes.map { route in
                    .with {
                        $0.destination = route.destination
                        $0.gateway = route.gateway ?? ""
                    }
                }
            }
        }
        hostname = c.hostname
        hosts = c.hosts
        resolvConf = c.resolvConf
        sharedFsTag = c.sharedFSTag
        if let r = c.restored {
            restored = .with {
                $0.entropy = Data(r.entropy)
                $0.realtimeNs = r.realtimeNs
                $0.templateMac = r.templateMAC
            }
        }
    }
}
