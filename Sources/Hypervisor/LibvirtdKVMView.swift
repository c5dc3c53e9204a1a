import Foundation
import Models

/// What libvirtd sees of `/dev/kvm`, read through its own mount namespace (`/proc/PID/root`), judged
/// as libvirt judges it: KVM counts as usable when its QEMU user may open the device read-write.
/// libvirt's QEMU capabilities cache stays valid only while that agrees with what its probe of QEMU
/// found, so a usable-looking `/dev/kvm` on which QEMU cannot run makes libvirtd probe QEMU again on
/// every domain start (`scripts/setup-host` starts libvirtd with an unopenable node there instead).
public struct LibvirtdKVMView: Sendable, Equatable {
    /// libvirtd's pid, or nil when no libvirtd runs.
    public var libvirtdPid: Int32?
    /// Whether libvirtd would count KVM as usable for its QEMU user.
    public var kvmUsable: Bool

    /// The view of the running libvirtd (the lowest pid named `libvirtd`); its QEMU user is
    /// libvirt's default for Debian, `libvirt-qemu` (root where that user does not exist).
    public static func current(qemuUser: String = "libvirt-qemu") -> LibvirtdKVMView {
        guard let pid = libvirtdPid() else { return LibvirtdKVMView(libvirtdPid: nil, kvmUsable: false) }
        var st = stat()
        guard stat("/proc/\(pid)/root/dev/kvm", &st) == 0 else {
            return LibvirtdKVMView(libvirtdPid: pid, kvmUsable: false)
        }
        let user = Self.user(qemuUser)
        let usable = Self.readWrite(
            mode: st.st_mode, owner: st.st_uid, group: st.st_gid, uid: user.uid, groups: user.groups)
        return LibvirtdKVMView(libvirtdPid: pid, kvmUsable: usable)
    }

    /// What is wrong when this view disagrees with the real-boot decisions (`accels`), or nil.
    public func disagreement(with accels: [Accel]) -> String? {
        guard libvirtdPid != nil else { return "libvirtd is not running (scripts/setup-host starts it)" }
        if kvmUsable, accels.contains(.tcg) {
            return "libvirtd sees a usable /dev/kvm that cannot boot the guest: it probes QEMU again on every "
                + "domain start (tens of seconds each); restart it through scripts/setup-host"
        }
        if !kvmUsable, accels.contains(.kvm) {
            return "KVM boots the guest but libvirtd cannot use /dev/kvm: libvirt pods would run under TCG"
        }
        return nil
    }

    /// Whether a user (`uid` with `groups`) may open a node of this mode and ownership read-write,
    /// by the permission bits as the kernel checks them (root: always).
    public static func readWrite(mode: mode_t, owner: uid_t, group: gid_t, uid: uid_t, groups: [gid_t]) -> Bool {
        if uid == 0 { return true }
        let bits: mode_t
        if uid == owner {
            bits = (mode >> 6) & 0o7
        } else if groups.contains(group) {
            bits = (mode >> 3) & 0o7
        } else {
            bits = mode & 0o7
        }
        return bits & 0o6 == 0o6
    }

    private static func user(_ name: String) -> (uid: uid_t, groups: [gid_t]) {
        guard let pw = getpwnam(name) else { return (0, [0]) }
        let uid = pw.pointee.pw_uid
        let gid = pw.pointee.pw_gid
        var count: Int32 = 64
        var groups = [gid_t](repeating: 0, count: Int(count))
        if getgrouplist(name, gid, &groups, &count) < 0 { return (uid, [gid]) }
        return (uid, Array(groups.prefix(Int(max(count, 0)))))
    }

    private static func libvirtdPid() -> Int32? {
        // try?: no /proc listing means no libvirtd to judge
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        let pids = entries.compactMap(Int32.init).sorted()
        return pids.first { pid in
            // try?: a process that ended while listing is not libvirtd
            let comm = try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8)
            return comm?.trimmingCharacters(in: .whitespacesAndNewlines) == "libvirtd"
        }
    }
}
