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
        // Host side of the agent channel (virtio-serial socket or vsock) with per-call deadlines.
        .target(
            name: "AgentClient",
            dependencies: [
                "AgentAPI", "Hypervisor",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        // Starting host helpers with only the descriptors they are meant to have (C: posix_spawn + closefrom).
        .target(name: "CSpawn"),
        // Host child processes: run to completion with a deadline, liveness by pid, wait statuses.
        .target(name: "Spawn", dependencies: ["CSpawn"], swiftSettings: strict),
        .systemLibrary(name: "CLibvirt", pkgConfig: "libvirt", providers: [.apt(["libvirt-dev"])]),
        // VM drivers behind one protocol: QEMU (direct) and libvirt.
        .target(
            name: "Hypervisor",
            dependencies: [
                "CLibvirt", "Spawn", "StateFiles",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // Atomic writes of persisted state files, shared by the sandbox and image stores.
        .target(name: "StateFiles", swiftSettings: strict),
        .systemLibrary(name: "CArchive", pkgConfig: "libarchive", providers: [.apt(["libarchive-dev"])]),
        // OCI images: registry client, content store, safe layer unpacking, image metadata.
        .target(
            name: "Images",
            dependencies: [
                "CArchive", "Config", "StateFiles", "Spawn",
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
        .target(name: "ContainerCore", dependencies: ["CContainerCore"], swiftSettings: strict),
        // Daemon configuration (TOML).
        .target(
            name: "Config",
            dependencies: [.product(name: "TOMLKit", package: "TOMLKit")],
            swiftSettings: strict
        ),
        // Pod sandbox lifecycle, persisted state and recovery.
        .target(
            name: "Sandboxes",
            dependencies: [
                "Config", "Hypervisor", "AgentClient", "AgentAPI", "StateFiles", "Spawn",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // CRI v1 RuntimeService/ImageService: one file per call.
        .target(
            name: "CRI",
            dependencies: [
                "CRIAPI", "CocoonAPI", "Sandboxes", "Images", "Config", "Hypervisor", "AgentClient", "AgentAPI", "ContainerCore", "Spawn",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // cocoonctl commands (a library so the parsing is unit-testable).
        .target(
            name: "CLI",
            dependencies: [
                "CRIAPI", "CocoonAPI",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
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
                "CRI", "Config", "Sandboxes", "Images", "Hypervisor", "CRIAPI",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(name: "cocoonctl", dependencies: ["CLI", .product(name: "ArgumentParser", package: "swift-argument-parser")], swiftSettings: strict),
        // The guest agent: PID 1 inside each pod VM. Only Glibc and SwiftProtobuf, to stay small.
        .executableTarget(
            name: "cocoon-agent",
            dependencies: ["AgentAPI", "CAgentSys", "ContainerCore"],
            path: "guest-agent/Sources/cocoon-agent",
            swiftSettings: strict
        ),
        .target(name: "CAgentSys", path: "guest-agent/Sources/CAgentSys"),
        .testTarget(
            name: "UnitTests",
            dependencies: [
                "Config", "Sandboxes", "Images", "CArchive", "Hypervisor", "AgentAPI", "AgentClient", "CLI", "CRI", "CRIAPI", "ContainerCore", "Spawn",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "CRIAPI", "CLI", "CocoonAPI", "Hypervisor", "Spawn",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
            ],
            swiftSettings: strict
        ),
    ]
)
