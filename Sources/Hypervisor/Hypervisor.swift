import BootContract
import Foundation
import Models
import Persistence
import Spawn

/// The seam between pod sandboxes and whatever runs their VMs. One implementation per backend
/// (`QEMUHypervisor`, `LibvirtHypervisor`); callers never see command lines or domain XML.
public protocol Hypervisor: Sendable {
    /// Which driver this is.
    var backend: Backend { get }
    /// True when the driver attaches a pod's tap by its name in the host's namespace (`VMNic.tapName`)
    /// rather than taking the open descriptor `VMNic.tapFD`.
    var opensTapByName: Bool { get }
    /// True when the driver can share a host directory with the guest (`VMSpec.sharedDir`).
    var sharesDirectories: Bool { get }
    /// True when the driver can boot a template VM and restore clones of it (`VMSpec.origin`).
    var makesTemplates: Bool { get }
    /// The QEMU binary behind this driver's VMs (a template's key names it).
    var qemuBinary: String { get }
    /// Starts a VM and returns once the hypervisor runs it (not once the guest is up).
    func boot(_ spec: VMSpec) async throws(HypervisorError) -> VMHandle
    /// Waits up to `timeout` for the VM to end by itself (after the agent powered the guest off),
    /// then asks the hypervisor to quit, then kills it. Releases the VM's runtime files.
    func stop(_ vm: VMHandle, timeout: Duration) async
    /// How a VM of this spec booted under KVM went: `failure` nil when it reached its guest, else
    /// why not (the caller boots it again with `accel = .tcg`). Repeated failures make every later
    /// VM of this guest kernel use TCG (`Accelerator`).
    func noteKVMBoot(_ spec: VMSpec, failure: String?) async
    /// Ends the VM at once.
    func kill(_ vm: VMHandle) async
    /// Moves a running VM (one booted before its pod was known: the warm pool) into a cgroup of its
    /// own under the pod's cgroup `parent`, sized for `vcpus` and `memoryMiB`; the updated handle.
    func joinPodCgroup(_ vm: VMHandle, parent: String, vcpus: Int, memoryMiB: Int) async throws(HypervisorError)
        -> VMHandle
    /// True when the VM has ended within `timeout`.
    func wait(_ vm: VMHandle, timeout: Duration) async -> Bool
    /// What the VM is doing now.
    func describe(_ vm: VMHandle) async -> VMStatus
    /// Hot-plugs a read-only disk image onto the VM's SCSI bus at `slot` (0-255); the guest finds
    /// it by `serial` (letters, digits, '-'; at most 20 characters).
    func attachDisk(_ vm: VMHandle, path: String, serial: String, slot: Int) async throws(HypervisorError)
    /// Unplugs a disk attached by `attachDisk` (the guest must have unmounted it).
    func detachDisk(_ vm: VMHandle, serial: String, slot: Int) async throws(HypervisorError)
    /// Pauses a VM booted with `origin = .template` and writes its device state (not its RAM, which
    /// is in the template's memory file) to the open file `stateFD`. The VM stays paused; stop it.
    func saveTemplate(_ vm: VMHandle, stateFD: Int32) async throws(HypervisorError)
    /// Ends whatever a crashed daemon left of the VM named `vmName` when its handle was never saved
    /// (a crash while it booted): its processes, its cgroup under `cgroupParent`, and whatever the
    /// driver keeps by that name (a libvirt domain). Nothing there is not an error.
    func reapOrphan(vmName: String, cgroupParent: String?) async
    /// What a VM whose agent stopped answering is doing, read without changing it (one line for a
    /// log and an error message); nil where the driver cannot tell.
    func stallReport(_ vm: VMHandle) async -> String?
    /// Pauses and resumes a running VM at once, which wakes each vCPU and the hypervisor's own loop
    /// (a guest that slept through the interrupt that had work for it); false where nothing was done.
    func kick(_ vm: VMHandle) async -> Bool
    /// Why a VM whose guest has just come up cannot be trusted to keep its timers (it is booted
    /// again), or nil.
    func bootDefect(_ vm: VMHandle) async -> String?
}

extension Hypervisor {
    public var qemuBinary: String { QEMUHypervisor.defaultBinary }
    public func stallReport(_ vm: VMHandle) async -> String? { nil }
    public func kick(_ vm: VMHandle) async -> Bool { false }
    public func bootDefect(_ vm: VMHandle) async -> String? { nil }
}

/// How a VM comes to be.
public enum VMOrigin: Sendable, Equatable {
    /// A fresh boot.
    case boot
    /// A boot that becomes a template: its RAM is the memfd `ramFD` (shared; the caller seals it
    /// once the VM has ended), its devices are the ones every clone has, and nothing in it may
    /// punch holes in its RAM (no free-page reporting).
    case template(ramFD: Int32)
    /// A clone of a template: its RAM maps the template's sealed memfd privately (copy-on-write)
    /// and its devices resume from the template's saved device state.
    case clone(ramFD: Int32, state: Data)
}

/// What to boot: identity, guest image, size and where the VM's files go.
public struct VMSpec: Sendable, Equatable {
    /// Unique per VM (the sandbox id); the hypervisor names the VM `cocoon-<id prefix>`.
    public var id: String
    public var kernel: String
    public var initrd: String
    /// Read-only ext4 image with the guest agent, attached as the first virtio-blk disk (/dev/vda).
    public var agentImage: String
    public var vcpus: Int
    public var memoryMiB: Int
    public var accel: Accel
    public var extraKernelArgs: String
    /// Persistent per-VM directory (console log).
    public var stateDir: String
    /// Per-VM directory for sockets and pid files.
    public var runDir: String
    /// The 0600 file with the VM's agent token, given to the guest through fw_cfg
    /// (`BootContract.agentTokenFwCfgName`); nil: no token (a guest that then refuses every session).
    public var agentTokenFile: String?
    /// The host user and group the VM's process runs as (one of its own per pod); nil: the daemon's.
    public var user: VMUser?
    /// The pod's network interface: a tap the daemon opened in the pod's network namespace.
    public var nic: VMNic?
    /// The pod's network namespace file, for a driver whose pod process joins it (native); nil:
    /// the host's network (a hostNetwork pod) or a VM's tap.
    public var netns: String?
    /// A native pod's containers in the node's PID namespace, and its IPC namespace the node's.
    public var hostPID = false
    public var hostIPC = false
    /// The host directory shared with the guest through virtio-fs (tag `BootContract.sharedFSTag`);
    /// nil: none. The guest's RAM is then a shared mapping (vhost-user needs one).
    public var sharedDir: String?
    /// The pin of the pod's mount namespace, where the shared directory's binds are (virtiofsd and a
    /// native agent start in it); nil: they are in the host's (a pod of an older daemon).
    public var sharedMountNamespace: String?
    /// How the guest caches the shared directory (virtiofsd's `cache=`).
    public var sharedCache: SharedFSCache = .auto
    /// A fresh boot, a template's boot or a template's clone.
    public var origin: VMOrigin = .boot
    /// The pod's cgroup (a hierarchy path from `VMCgroup.resolveParent`) that the VM's cgroup sits
    /// under; nil: `/cocoon`.
    public var cgroupParent: String?

    public init(
        id: String, kernel: String, initrd: String, agentImage: String, vcpus: Int, memoryMiB: Int, accel: Accel,
        extraKernelArgs: String = "", stateDir: String, runDir: String, agentTokenFile: String? = nil,
        user: VMUser? = nil
    ) {
        self.id = id
        self.kernel = kernel
        self.initrd = initrd
        self.agentImage = agentImage
        self.vcpus = vcpus
        self.memoryMiB = memoryMiB
        self.accel = accel
        self.extraKernelArgs = extraKernelArgs
        self.stateDir = stateDir
        self.runDir = runDir
        self.agentTokenFile = agentTokenFile
        self.user = user
    }

    public var vmName: String { Self.vmName(forID: id) }
    /// The name the VM of a sandbox id runs under (QEMU's `-name`, the libvirt domain, its cgroup).
    public static func vmName(forID id: String) -> String { "cocoon-" + String(id.prefix(12)) }

    /// What every driver checks and creates before launching: the guest image exists, and the VM's
    /// state and run directories are there.
    func prepareFiles() throws(HypervisorError) {
        for (what, path) in [("kernel", kernel), ("initrd", initrd), ("agent image", agentImage)]
            + (agentTokenFile.map { [("agent token", $0)] } ?? [])
        where !FileManager.default.fileExists(atPath: path) {
            throw .invalidSpec("guest \(what) \(path) does not exist (run images/build-guest)")
        }
        do {
            // `<run_dir>/vms` is passable (a libvirt VM's QEMU opens its own files below it by name);
            // the VM's directory itself is the daemon's (the libvirt backend opens it up to 0711).
            try PassableDirectory.ensure((runDir as NSString).deletingLastPathComponent)
            try FileManager.default.createDirectory(atPath: runDir, withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: stateDir, withIntermediateDirectories: true)
        } catch {
            throw .bootFailed("cannot create VM directories: \(error)")
        }
    }
}

/// The guest CPU each accelerator gets. Under TCG it is `max` without ERMS and FSRM: TCG emulates
/// `rep movsb` a byte at a time, and with those flags the guest's kernel and libc copy memory with
/// it; without them they use wide moves, and every copy (a socket's, a pipe's, a page's) runs about
/// three times faster (measured in `scripts/bench streaming`: guest TCP loopback 45 -> 108 MiB/s).
public enum GuestCPU {
    /// TCG features turned off.
    public static let tcgDisabledFeatures = ["erms", "fsrm"]

    /// QEMU's `-cpu` value.
    public static func qemu(_ accel: Accel) -> String {
        accel == .kvm ? "host" : (["max"] + tcgDisabledFeatures.map { "-" + $0 }).joined(separator: ",")
    }

    /// libvirt's `<cpu>` element.
    public static func libvirt(_ accel: Accel) -> String {
        guard accel != .kvm else { return "<cpu mode='host-passthrough'/>" }
        let features = tcgDisabledFeatures.map { "<feature policy='disable' name='\($0)'/>" }.joined()
        return "<cpu mode='maximum'>\(features)</cpu>"
    }
}

/// A VM's virtio-net NIC on a tap that cocoond opened (QEMU gets the descriptor; it never opens a
/// tap itself). The caller keeps its descriptor open until `boot` returns. A template's NIC has no
/// tap (`tapFD` -1): the device alone, which its clones find again with their own taps.
public struct VMNic: Sendable, Equatable {
    public var tapFD: Int32
    /// The guest NIC's MAC: the pod's CNI interface's, so traffic redirected from it reaches the guest.
    public var mac: String
    public var mtu: Int
    /// The tap's name, for a backend that attaches it by name (libvirt).
    public var tapName: String
    public init(tapFD: Int32, mac: String, mtu: Int, tapName: String) {
        self.tapFD = tapFD
        self.mac = mac
        self.mtu = mtu
        self.tapName = tapName
    }
}

/// The host identity of one VM's process: a user and group of its own, so that one VM's process can
/// neither signal nor read another's, nor the daemon's files.
public struct VMUser: Sendable, Codable, Equatable {
    public var uid: UInt32
    public var gid: UInt32
    public init(uid: UInt32, gid: UInt32) {
        self.uid = uid
        self.gid = gid
    }
}

/// A running (or once running) VM, as persisted with its sandbox: enough to find it again after
/// a daemon restart.
public struct VMHandle: Sendable, Codable, Equatable {
    public var backend: Backend
    public var name: String
    public var pid: Int32
    /// `kvm` or `tcg`.
    public var accel: Accel
    public var agent: AgentEndpoint
    /// QMP socket (qemu backend).
    public var controlSocket: String?
    public var consoleLog: String
    public var runDir: String
    /// Unix time (ns) when the hypervisor was asked to boot.
    public var launchedAtNs: Int64
    /// The host user the VM's process runs as (nil: root, or the backend's own user).
    public var uid: UInt32?
    /// QEMU's `-sandbox` (seccomp) setting, as given.
    public var seccomp: String?
    /// The VM's cgroup, relative to each hierarchy's root (e.g. `/cocoon/cocoon-0123abcd`).
    public var cgroup: String?
    /// The directory shared with the guest, and the pid of the virtiofsd serving it (qemu backend).
    public var sharedDir: String?
    public var fsDaemonPid: Int32?
    /// Where image disks are linked for the VM's user while attached (libvirt backend).
    public var diskDir: String?
    /// When the VM's process started (`HostProcess.startTicks`): how it is told alive, whatever its
    /// command line says (nil in records of older daemons: then by its name on its command line).
    public var startTicks: UInt64?

    /// The VM's process is alive.
    public var isAlive: Bool { HostProcess.isAlive(pid: pid, marker: name, startTicks: startTicks) }

    public init(
        backend: Backend, name: String, pid: Int32, accel: Accel, agent: AgentEndpoint, controlSocket: String?,
        consoleLog: String, runDir: String, launchedAtNs: Int64
    ) {
        self.backend = backend
        self.name = name
        self.pid = pid
        self.accel = accel
        self.agent = agent
        self.controlSocket = controlSocket
        self.consoleLog = consoleLog
        self.runDir = runDir
        self.launchedAtNs = launchedAtNs
    }
}

public enum VMStatus: Sendable, Equatable {
    case running(pid: Int32)
    case exited
}

/// Why a VM could not be booted or controlled. The message names the VM and the cause.
public enum HypervisorError: Error, CustomStringConvertible, Equatable {
    case bootFailed(String)
    /// QEMU under KVM exited before it ran the machine (a /dev/kvm that cannot run this guest: on
    /// some hosts QEMU aborts setting up the vCPU); the same VM may boot under TCG.
    case kvmStartFailed(String)
    case unavailable(String)
    case invalidSpec(String)
    case deviceFailed(String)

    public var description: String {
        switch self {
        case .bootFailed(let m): "VM boot failed: \(m)"
        case .kvmStartFailed(let m): "VM boot under KVM failed: \(m)"
        case .unavailable(let m): "hypervisor unavailable: \(m)"
        case .invalidSpec(let m): "invalid VM spec: \(m)"
        case .deviceFailed(let m): "VM device change failed: \(m)"
        }
    }
}
