import AgentClient
import Foundation
import Models

/// Container records written before the agent seam was typed kept the container's process as the
/// agent API's protobuf JSON (`processJSON`). `ContainerManager.recover` turns it into a
/// `ProcessSpec` once and saves the record in today's form, so ExecSync in containers that ran
/// across the upgrade keeps their env, user and capabilities.
struct LegacyProcessJSON: Decodable {
    struct User: Decodable {
        var uid: UInt32?
        var username: String?
        var gid: UInt32?
        var groupname: String?
        var supplementaryGroups: [UInt32]?
    }
    struct Seccomp: Decodable {
        var kind: String?
        var profile: String?
    }
    var args: [String]?
    var env: [String]?
    var workingDir: String?
    var user: User?
    var capabilities: [String]?
    var noNewPrivileges: Bool?
    var seccomp: Seccomp?

    /// Nil when the text is not the agent API's JSON of a process.
    static func process(from text: String) -> ProcessSpec? {
        // try?: the nil answer says it
        guard let legacy = try? JSONDecoder().decode(Self.self, from: Data(text.utf8)) else { return nil }
        let user = UserSpec(
            uid: legacy.user?.uid, username: legacy.user?.username.flatMap { $0.isEmpty ? nil : $0 },
            gid: legacy.user?.gid,
            groupname: legacy.user?.groupname.flatMap { $0.isEmpty ? nil : $0 },
            supplementaryGroups: legacy.user?.supplementaryGroups ?? [])
        let seccomp: SeccompProfile
        switch legacy.seccomp?.kind {
        case "RUNTIME_DEFAULT": seccomp = .runtimeDefault
        case "PROFILE": seccomp = .json(legacy.seccomp?.profile ?? "")
        default: seccomp = .unconfined
        }
        return ProcessSpec(
            args: legacy.args ?? [], env: legacy.env ?? [], workingDir: legacy.workingDir ?? "", user: user,
            capabilities: Set((legacy.capabilities ?? []).compactMap(Capability.init(name:))),
            noNewPrivileges: legacy.noNewPrivileges ?? false, seccomp: seccomp)
    }
}
