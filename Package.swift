// swift-tools-version:6.1
import PackageDescription

let strict: [SwiftSetting] = [.swiftLanguageMode(.v6)]

let package = Package(
    name: "cocoon",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "cocoond", targets: ["cocoond"]),
        .executable(name: "cocoonctl", targets: ["cocoonctl"]),
        .executable(name: "cocoon-agent", targets: ["cocoon-agent"]),
        .executable(name: "cocoon-pause", targets: ["cocoon-pause"]),
    ],
    dependencies: [
        .package(url: "https://github.com/grpc/grpc-swift-2.git", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport.git", from: "2.9.2"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf.git", from: "2.4.1"),
        // No default traits: keeps full Foundation out of SwiftProtobuf, so the guest agent stays small.
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0", traits: []),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/LebJe/TOMLKit.git", from: "0.6.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
    ],
    targets: [
        // Generated CRI v1 messages and gRPC stubs (scripts/gen-proto).
        .target(
            name: "CRIAPI",
            dependencies: [
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
            ],
            swiftSettings: strict
        ),
        // The host<->guest agent protocol: generated messages plus the frame codec. Shared by host and guest.
        .target(
            name: "AgentAPI",
            dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")],
            swiftSettings: strict
        ),
        // What host and guest agree on at boot: kernel command-line keys, agent port name and vsock port.
        .target(name: "BootContract", swiftSettings: strict),
        // The one error type of Cocoon's services: a code, a message naming the object, the cause.
        .target(name: "Errors", swiftSettings: strict),
        // The shared models every layer speaks (a leaf): a process to run, capabilities, seccomp
        // profiles, wait statuses, the configuration's choices (backend, accelerator, cgroup driver)
        // and the duration units.
        .target(name: "Models", swiftSettings: strict),
        // Small system files: bounded text reads and control-file writes, the mount table (a leaf).
        .target(name: "SystemFiles", swiftSettings: strict),
        // Persisted state: atomic files, the JSON record store, record ids, per-key locks.
        .target(
            name: "Persistence",
            dependencies: ["Errors", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        // The guest agent seen from the host: the `GuestAgent` protocol and its domain types, and the
        // real client over the agent channel (virtio-serial socket or vsock) with per-call deadlines.
        .target(
            name: "AgentClient",
            dependencies: [
                "AgentAPI", "BootContract", "CSpawn", "Errors", "Models", "Spawn",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        // Starting host helpers with only the descriptors they are meant to have (C: posix_spawn + closefrom).
        .target(name: "CSpawn"),
        // Host child processes: run to completion with a deadline, liveness by pid, wait statuses.
        .target(name: "Spawn", dependencies: ["CSpawn", "Models"], swiftSettings: strict),
        .systemLibrary(name: "CLibvirt", pkgConfig: "libvirt", providers: [.apt(["libvirt-dev"])]),
        // VM drivers behind one protocol: QEMU (direct) and libvirt.
        .target(
            name: "Hypervisor",
            dependencies: [
                "BootContract", "CLibvirt", "CSpawn", "Models", "Spawn", "Persistence",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .systemLibrary(
            name: "CNetlink", pkgConfig: "libnl-route-3.0", providers: [.apt(["libnl-3-dev", "libnl-route-3-dev"])]),
        // libnl behind plain C functions: libnl's headers (and the Linux uapi headers they include)
        // stay inside the C file and never become part of a Swift-visible module.
        .target(name: "CNetlinkOps", dependencies: ["CNetlink"]),
        // Links, addresses, routes and tc through libnl: the host wires pod taps, the guest agent
        // configures the pod's interface.
        .target(name: "Netlink", dependencies: ["CNetlinkOps"], swiftSettings: strict),
        // Entering network namespaces on threads of their own (C: setns, unshare, tun).
        .target(name: "CNetns"),
        // The new mount API (open_tree, mount_setattr, move_mount) for volumes.
        .target(name: "CMounts"),
        // Pods' shared directories on the host: volumes bound safely for virtio-fs.
        .target(
            name: "Volumes",
            dependencies: [
                "AgentClient", "CMounts", "Errors", "SystemFiles", .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strict),
        // Pod networking: CNI plugins into a namespace per pod, a tap wired to the pod's interface.
        // (Not named "Network": swift-nio-transport-services imports Apple's Network framework
        // wherever a module of that name can be imported.)
        .target(
            name: "PodNetwork",
            dependencies: [
                "CNetns", "Models", "Netlink", "Persistence", "Spawn", "SystemFiles",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .systemLibrary(name: "CArchive", pkgConfig: "libarchive", providers: [.apt(["libarchive-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        // The CRI streaming server (exec, attach, port-forward): SPDY/3.1 and WebSocket, optionally over TLS.
        .target(
            name: "Streaming",
            dependencies: [
                "CZlib", "Errors", "Models",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict),
        // OCI images: registry client, content store, safe layer unpacking, image metadata.
        .target(
            name: "Images",
            dependencies: [
                "CArchive", "Config", "Errors", "Models", "Persistence", "Spawn",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // Cocoon's own gRPC extension beside CRI (image import), JSON-coded.
        .target(
            name: "CocoonAPI",
            dependencies: [.product(name: "GRPCCore", package: "grpc-swift-2")],
            swiftSettings: strict
        ),
        // The clone-to-execve part of container creation, in C (no allocation after clone).
        .target(name: "CContainerCore", linkerSettings: [.linkedLibrary("seccomp")]),
        // Containers from an OCI-like description: namespaces, mounts, pivot_root, identity,
        // capabilities, cgroup v2. Used by the guest agent and tested directly on the host.
        .target(
            name: "ContainerCore", dependencies: ["CContainerCore", "Models", "SystemFiles"], swiftSettings: strict),
        // Daemon configuration (TOML).
        .target(
            name: "Config",
            dependencies: ["Models", .product(name: "TOMLKit", package: "TOMLKit")],
            swiftSettings: strict
        ),
        // The CRI container log format: the daemon's writer and `cocoonctl logs`' reader.
        .target(name: "ContainerLogs", swiftSettings: strict),
        // Containers in pod VMs: records and their state machine, volumes (shared, or copied into a VM
        // without a shared directory), exec sessions. Reaches each pod's agent through
        // `PodAgents`.
        .target(
            name: "Containers",
            dependencies: [
                "AgentClient", "ContainerLogs", "CSpawn", "Errors", "Models", "Persistence", "Spawn", "SystemFiles",
                "Volumes",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // Pod sandbox lifecycle, its state machine, persisted state and recovery; provides `PodAgents`.
        .target(
            name: "Sandboxes",
            dependencies: [
                "BootContract", "Config", "Containers", "Hypervisor", "AgentClient", "Errors", "Models", "PodNetwork",
                "Persistence", "Volumes", "Spawn", "CSpawn", .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strict
        ),
        // CRI v1 RuntimeService/ImageService: one file per call.
        .target(
            name: "CRI",
            dependencies: [
                "CRIAPI", "Containers", "Sandboxes", "Images", "Config", "Hypervisor", "AgentClient", "ContainerCore",
                "Errors", "Models", "PodNetwork", "Spawn", "Streaming", "Volumes",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // Cocoon's own gRPC services beside CRI (image import), errors mapped like CRI's.
        .target(
            name: "CocoonServices",
            dependencies: [
                "CocoonAPI", "CRI", "Images", "Sandboxes", .product(name: "GRPCCore", package: "grpc-swift-2"),
            ],
            swiftSettings: strict
        ),
        // cocoonctl commands (a library so the parsing is unit-testable).
        .target(
            name: "CLI",
            dependencies: [
                "AgentAPI", "CRIAPI", "CocoonAPI", "Config", "ContainerLogs", "Models", "PodNetwork", "Spawn",
                "Streaming",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "cocoond",
            dependencies: [
                "CRI", "CocoonServices", "Config", "Containers", "Errors", "Sandboxes", "Images", "Hypervisor",
                "CRIAPI",
                "Models", "PodNetwork", "Streaming", "Persistence",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "cocoonctl",
            dependencies: ["CLI", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: strict
        ),
        // A native pod's infra process: holds its namespaces, reaps its orphans as PID 1. C, static.
        .executableTarget(
            name: "cocoon-pause",
            linkerSettings: [.unsafeFlags(["-static-executable", "-Xlinker", "--gc-sections", "-Xlinker", "-s"])]),
        // The guest agent: PID 1 inside each pod VM. Only Glibc and SwiftProtobuf, to stay small.
        .executableTarget(
            name: "cocoon-agent",
            dependencies: [
                "AgentAPI", "AgentService", "BootContract", "CAgentSys", "ContainerCore", "ContainerLogs", "Models",
                "Netlink", "SystemFiles",
            ],
            path: "guest-agent/Sources/cocoon-agent",
            swiftSettings: strict
        ),
        .target(name: "CAgentSys", path: "guest-agent/Sources/CAgentSys"),
        // The guest agent's request dispatcher: one handler per request kind in one table, driving
        // the pod's services through protocols (unit-tested with fakes; no descriptors here).
        .target(
            name: "AgentService", dependencies: ["AgentAPI"], path: "guest-agent/Sources/AgentService",
            swiftSettings: strict),
        .testTarget(
            name: "UnitTests",
            dependencies: [
                "Config", "ContainerLogs", "Containers", "Sandboxes", "Images", "CArchive", "Hypervisor", "AgentAPI",
                "AgentClient", "AgentService", "CAgentSys",
                "BootContract", "CLI", "CRI", "CRIAPI", "ContainerCore", "Errors", "PodNetwork", "Netlink",
                "Models", "Persistence", "Volumes", "Spawn", "CSpawn", "Streaming", "SystemFiles",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "AgentAPI", "CRIAPI", "CLI", "CocoonAPI", "ContainerCore", "Hypervisor", "Models", "Spawn",
                "SystemFiles",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
            ],
            swiftSettings: strict
        ),
    ]
)
