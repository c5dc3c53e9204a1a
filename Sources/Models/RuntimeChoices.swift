// What the configuration chooses among: the VM driver, the accelerator, the shared directory's
// cache mode and the cgroup driver (shared by the config, the hypervisors and the CRI layer).

/// How a guest caches its shared directory (virtiofsd's `cache=` option): `auto` keeps file data
/// and attributes for about a second (a host change shows within it), `always` keeps them until the
/// guest forgets them (fastest metadata, host changes may stay unseen), `none` asks the host every
/// time (host changes seen at once, slowest metadata).
public enum SharedFSCache: String, Sendable, Codable, CaseIterable { case auto, always, none }

/// A pod driver, as named in the config (`backend = "qemu"`): a VM through QEMU or libvirt, or
/// `native`: no VM, the pod's containers run on the host (trusted and host-namespace pods).
public enum Backend: String, Sendable, Codable, CaseIterable {
    case qemu, libvirt, native
    /// True for the drivers that put each pod in a VM.
    public var isVM: Bool { self != .native }
}

/// Which accelerator a VM asks for (`auto`: KVM where it can run the guest, else TCG) or runs
/// under (`kvm` or `tcg`).
public enum Accel: String, Sendable, Codable, CaseIterable { case auto, kvm, tcg }

/// How CRI's `cgroup_parent` is written (the kubelet's `cgroupDriver`).
public enum CgroupDriver: String, Sendable, Codable, CaseIterable {
    /// `systemd` for a parent that is a slice name (`kubepods-burstable-pod1.slice`), `cgroupfs` otherwise.
    case auto
    /// A path in the hierarchy: `/kubepods/burstable/pod1`.
    case cgroupfs
    /// A slice name, expanded as systemd does: `a-b-c.slice` is `/a.slice/a-b.slice/a-b-c.slice`.
    case systemd

    /// The driver the kubelet should use: this one, or under `auto` systemd's where systemd runs
    /// the host (`systemdBooted`: sd_booted's test, /run/systemd/system), cgroupfs otherwise.
    public func forKubelet(systemdBooted: Bool) -> CgroupDriver {
        self != .auto ? self : systemdBooted ? .systemd : .cgroupfs
    }
}
