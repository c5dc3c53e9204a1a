import CContainerCore
import FoundationEssentials
import Glibc
import Models

/// Compiles profiles to BPF (x86_64, plus the i386 and x32 ABIs so they cannot be used to get around it).
public enum Seccomp {
    /// The BPF program (an array of struct sock_filter) or nil for `.unconfined`. RuntimeDefault
    /// depends on the process's capabilities (a call that needs one is allowed only with it).
    public static func compile(_ profile: SeccompProfile, capabilities: Set<Capability> = Capability.defaultSet)
        throws(ContainerCoreError) -> [UInt8]?
    {
        switch profile {
        case .unconfined:
            return nil
        case .runtimeDefault:
            return try build(
                defaultAction: actErrno(EPERM), rules: RuntimeDefaultSeccomp.rules(capabilities: capabilities))
        case .json(let text):
            let profile: OCIProfile
            do {
                profile = try JSONDecoder().decode(OCIProfile.self, from: Data(text.utf8))
            } catch {
                throw .invalidSpec("seccomp profile is not valid JSON in the OCI format: \(error)")
            }
            let defaultAction = try action(profile.defaultAction, errno: profile.defaultErrnoRet)
            var rules: [Rule] = []
            for (i, s) in (profile.syscalls ?? []).enumerated() {
                let args = try (s.args ?? []).map { a throws(ContainerCoreError) -> scmp_arg_cmp in
                    guard let op = operators[a.op] else {
                        throw .invalidSpec("seccomp profile: syscalls[\(i)]: unknown operator \(a.op)")
                    }
                    guard a.index < 6 else {
                        throw .invalidSpec("seccomp profile: syscalls[\(i)]: argument index \(a.index) out of range")
                    }
                    return scmp_arg_cmp(
                        arg: UInt32(a.index), op: scmp_compare(rawValue: op), datum_a: a.value, datum_b: a.valueTwo ?? 0
                    )
                }
                rules.append(
                    Rule(
                        names: s.names ?? (s.name.map { [$0] } ?? []), action: try action(s.action, errno: s.errnoRet),
                        args: args))
            }
            return try build(defaultAction: defaultAction, rules: rules)
        }
    }

    struct Rule {
        var names: [String]
        var action: UInt32
        var args: [scmp_arg_cmp]
    }

    static let actAllow: UInt32 = 0x7fff_0000
    static func actErrno(_ code: Int32) -> UInt32 { 0x0005_0000 | (UInt32(code) & 0xffff) }

    static let operators: [String: UInt32] = [
        "SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4, "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6,
        "SCMP_CMP_MASKED_EQ": 7,
    ]

    static func action(_ name: String, errno: UInt32?) throws(ContainerCoreError) -> UInt32 {
        switch name {
        case "SCMP_ACT_ALLOW": return actAllow
        case "SCMP_ACT_ERRNO": return actErrno(Int32(errno ?? UInt32(EPERM)))
        case "SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD": return 0
        case "SCMP_ACT_KILL_PROCESS": return 0x8000_0000
        case "SCMP_ACT_TRAP": return 0x0003_0000
        case "SCMP_ACT_LOG": return 0x7ffc_0000
        case "SCMP_ACT_TRACE": return 0x7ff0_0000 | ((errno ?? 0) & 0xffff)
        default: throw .invalidSpec("seccomp profile: unknown action \(name)")
        }
    }

    static func build(defaultAction: UInt32, rules: [Rule]) throws(ContainerCoreError) -> [UInt8] {
        guard let ctx = seccomp_init(defaultAction) else { throw .system("seccomp_init failed") }
        defer { seccomp_release(ctx) }
        // SCMP_ARCH_X86 and SCMP_ARCH_X32 (audit arch values from libseccomp's seccomp.h).
        for arch: UInt32 in [0x4000_0003, 0x4000_003e] {
            let rc = seccomp_arch_add(ctx, arch)
            if rc != 0 && rc != -EEXIST { throw .system("seccomp_arch_add: \(String(cString: strerror(-rc)))") }
        }
        for rule in rules where rule.action != defaultAction {
            for name in rule.names {
                let number = seccomp_syscall_resolve_name(name)
                guard number != -1 else { continue }  // not a system call on this kernel/arch: skipped, as runc does
                let rc = rule.args.withUnsafeBufferPointer {
                    seccomp_rule_add_array(ctx, rule.action, number, UInt32(rule.args.count), $0.baseAddress)
                }
                if rc != 0 { throw .invalidSpec("seccomp rule for \(name): \(String(cString: strerror(-rc)))") }
            }
        }
        var buffer: UnsafeMutableRawPointer?
        var length = 0
        let rc = ccore_seccomp_export(ctx, &buffer, &length)
        guard rc == 0, let buffer else { throw .system("seccomp export: \(String(cString: strerror(-rc)))") }
        defer { free(buffer) }
        return Array(UnsafeRawBufferPointer(start: buffer, count: length))
    }

    /// The OCI runtime-spec / Docker seccomp JSON, the parts Cocoon applies.
    struct OCIProfile: Decodable {
        var defaultAction: String
        var defaultErrnoRet: UInt32?
        var syscalls: [Syscall]?
        struct Syscall: Decodable {
            var names: [String]?
            var name: String?
            var action: String
            var errnoRet: UInt32?
            var args: [Arg]?
        }
        struct Arg: Decodable {
            var index: UInt
            var value: UInt64
            var valueTwo: UInt64?
            var op: String
        }
    }
}
