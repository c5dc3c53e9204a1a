import AgentClient
import CRIAPI
import ContainerCore
import Errors
import Foundation
import Models

/// The kubelet's container settings merged with the image's, into the agent's process description.
enum ContainerArgs {
    /// run_as_user / run_as_username / run_as_group win over the image's `User` ("uid[:gid]" or "name[:group]").
    static func user(_ s: Runtime_V1_LinuxContainerSecurityContext, imageUser: String) throws -> UserSpec {
        var user = UserSpec()
        let parts = imageUser.split(separator: ":", maxSplits: 1).map(String.init)
        if let first = parts.first, !first.isEmpty {
            if let uid = UInt32(first) { user.uid = uid } else { user.username = first }
        }
        if parts.count == 2, !parts[1].isEmpty {
            if let gid = UInt32(parts[1]) { user.gid = gid } else { user.groupname = parts[1] }
        }
        if s.hasRunAsUser {
            guard s.runAsUser.value >= 0, s.runAsUser.value <= Int64(UInt32.max) else {
                throw CocoonError.invalidArgument(
                    "config.linux.security_context.run_as_user \(s.runAsUser.value) is out of range")
            }
            user.uid = UInt32(s.runAsUser.value)
            user.username = nil
        } else if !s.runAsUsername.isEmpty {
            user.uid = nil
            user.username = s.runAsUsername
        }
        if s.hasRunAsGroup {
            // As containerd: a group alone would run as root with that group, which nobody means.
            guard user.uid != nil || user.username != nil else {
                throw CocoonError.invalidArgument(
                    "config.linux.security_context.run_as_group \(s.runAsGroup.value) is set without "
                        + "run_as_user, run_as_username or an image user"
                )
            }
            guard s.runAsGroup.value >= 0, s.runAsGroup.value <= Int64(UInt32.max) else {
                throw CocoonError.invalidArgument(
                    "config.linux.security_context.run_as_group \(s.runAsGroup.value) is out of range")
            }
            user.gid = UInt32(s.runAsGroup.value)
            user.groupname = nil
        }
        for g in s.supplementalGroups {
            guard g >= 0, g <= Int64(UInt32.max) else {
                throw CocoonError.invalidArgument(
                    "config.linux.security_context.supplemental_groups: \(g) is out of range")
            }
            user.supplementaryGroups.append(UInt32(g))
        }
        return user
    }

    /// CRI `seccomp` (or the deprecated `seccomp_profile_path`): unset means unconfined, as in
    /// containerd; a Localhost profile is read from the host path it names.
    static func seccomp(_ s: Runtime_V1_LinuxContainerSecurityContext) throws -> SeccompProfile {
        // A privileged container runs unconfined whatever profile it names, as in containerd.
        if s.privileged { return .unconfined }
        var result = SeccompProfile.unconfined
        var localhost = ""
        if s.hasSeccomp {
            switch s.seccomp.profileType {
            case .runtimeDefault: result = .runtimeDefault
            case .unconfined: result = .unconfined
            case .localhost: localhost = s.seccomp.localhostRef
            default: throw CocoonError.invalidArgument("config.linux.security_context.seccomp: unknown profile type")
            }
        } else {
            let path = s.seccompProfilePath
            if path == "runtime/default" || path == "docker/default" {
                result = .runtimeDefault
            } else if path.hasPrefix("localhost/") {
                localhost = String(path.dropFirst("localhost".count))
            } else if !path.isEmpty && path != "unconfined" {
                throw CocoonError.invalidArgument(
                    "config.linux.security_context.seccomp_profile_path \"\(path)\" is not known")
            }
        }
        if result == .unconfined && !localhost.isEmpty {
            guard localhost.hasPrefix("/") else {
                throw CocoonError.invalidArgument("seccomp localhost_ref \"\(localhost)\" must be an absolute path")
            }
            guard let data = FileManager.default.contents(atPath: localhost), data.count <= 1 << 20 else {
                throw CocoonError.notFound("seccomp profile \(localhost) does not exist or is larger than 1 MiB")
            }
            let text = String(decoding: data, as: UTF8.self)
            do {
                _ = try Seccomp.compile(.json(text))
            } catch {
                throw CocoonError.invalidArgument("seccomp profile \(localhost): \(error)")
            }
            result = .json(text)
        }
        return result
    }

    /// The paths to mask and make read-only inside the container, or nil for the runtime's defaults:
    /// none for a privileged container; the kubelet's lists, when it sends them, replace the defaults.
    static func paths(_ s: Runtime_V1_LinuxContainerSecurityContext) throws -> ContainerCreateSpec.PathOverrides? {
        if s.privileged { return .init(masked: [], readonly: []) }
        guard !s.maskedPaths.isEmpty || !s.readonlyPaths.isEmpty else { return nil }
        for (field, list) in [("masked_paths", s.maskedPaths), ("readonly_paths", s.readonlyPaths)] {
            guard list.count <= 256 else {
                throw CocoonError.invalidArgument("config.linux.security_context.\(field) has more than 256 entries")
            }
            for path in list
            where !path.hasPrefix("/") || path.split(separator: "/").contains("..") || path.contains("\0") {
                throw CocoonError.invalidArgument(
                    "config.linux.security_context.\(field): \"\(path)\" must be an absolute path without \"..\"")
            }
        }
        return .init(masked: s.maskedPaths, readonly: s.readonlyPaths)
    }

    /// The default set with the request's add/drop applied (privileged: every capability).
    static func capabilities(_ s: Runtime_V1_LinuxContainerSecurityContext) throws -> Set<Capability> {
        do {
            return
                s.privileged
                ? Capability.all
                : try Capability.resolve(add: s.capabilities.addCapabilities, drop: s.capabilities.dropCapabilities)
        } catch {
            throw CocoonError.invalidArgument("config.linux.security_context.\(error)")
        }
    }
}
