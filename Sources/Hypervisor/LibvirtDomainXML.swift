import BootContract
import CLibvirt
import Foundation
import Logging
import Models
import Spawn

/// The domain definition for one pod VM (a pure function, unit-tested).
enum LibvirtDomainXML {
    static func make(spec: VMSpec, accel: Accel, user: VMUser, files: LibvirtJail.Files, fsSocket: String? = nil)
        -> String
    {
        let cmdline = GuestKernelArgs.make(
            transport: .serial(path: files.agentSocket), bus: .pci, pciOff: false, extra: spec.extraKernelArgs)
        let token = files.token.map(tokenEntry)
        let sharedRAM = fsSocket == nil ? "" : sharedMemory
        let filesystem = fsSocket.map(virtioFS)
        // libvirt's cgroup holds QEMU for the moment before cocoond moves it into the pod's: the same CPU
        // bound. (Not memtune's hard_limit: libvirt then raises QEMU's RLIMIT_MEMLOCK to it, which a
        // daemon without CAP_SYS_RESOURCE, as in a container, may not.)
        let limits = QEMULimits.cgroup(spec: spec)
        return """
            <domain type='\(accel == .kvm ? "kvm" : "qemu")'>
              <name>\(escape(spec.vmName))</name>
              <memory unit='MiB'>\(spec.memoryMiB)</memory>
              \(sharedRAM)
              <vcpu>\(spec.vcpus)</vcpu>
              <cputune>
                <global_period>\(VMCgroup.Limits.cpuPeriodMicros)</global_period>
                <global_quota>\(limits.cpuQuotaMicros)</global_quota>
              </cputune>
              <os>
                <type arch='x86_64' machine='q35'>hvm</type>
                <kernel>\(escape(spec.kernel))</kernel>
                <initrd>\(escape(spec.initrd))</initrd>
                <cmdline>\(escape(cmdline))</cmdline>
              </os>
              \(token ?? "")
              \(GuestCPU.libvirt(accel))
              <on_poweroff>destroy</on_poweroff>
              <on_reboot>destroy</on_reboot>
              <on_crash>destroy</on_crash>
              <seclabel type='static' model='dac' relabel='no'><label>+\(user.uid):+\(user.gid)</label></seclabel>
              <devices>
                <serial type='null'><log file='\(escape(files.consoleLog))' append='off'/><target port='0'/></serial>
                <channel type='unix'>
                  <source mode='bind' path='\(escape(files.agentSocket))'/>
                  <target type='virtio' name='\(BootContract.agentPortName)'/>
                </channel>
                <disk type='file' device='disk'>
                  <driver name='qemu' type='raw'/>
                  <source file='\(escape(spec.agentImage))'/>
                  <target dev='vda' bus='virtio'/>
                  <readonly/>
                </disk>
                \(spec.nic.map(interface) ?? "")
                \(filesystem ?? "")
                <controller type='scsi' index='0' model='virtio-scsi'/>
                <memballoon model='virtio' freePageReporting='on'/>
              </devices>
            </domain>
            """
    }

    /// The agent token's fw_cfg entry: it reaches the guest from its copy in the run dir (libvirt >= 6.5).
    private static func tokenEntry(_ token: String) -> String {
        "<sysinfo type='fwcfg'><entry name='\(BootContract.agentTokenFwCfgName)' file='\(escape(token))'/></sysinfo>"
    }

    /// Guest RAM a shared memfd, which virtio-fs (vhost-user) needs.
    private static let sharedMemory =
        "<memoryBacking><source type='memfd'/><access mode='shared'/></memoryBacking>"

    /// The pod's shared directory over virtio-fs, served by its running virtiofsd on `socket`.
    private static func virtioFS(_ socket: String) -> String {
        "<filesystem type='mount'><driver type='virtiofs' queue='1024'/><source socket='\(escape(socket))'/>"
            + "<target dir='\(BootContract.sharedFSTag)'/></filesystem>"
    }

    /// The pod's NIC: virtio on the existing tap cocoond made, with the pod interface's MAC and MTU.
    static func interface(_ nic: VMNic) -> String {
        """
        <interface type='ethernet'>
          <mac address='\(escape(nic.mac))'/>
          <target dev='\(escape(nic.tapName))' managed='no'/>
          <model type='virtio'/>
          <mtu size='\(nic.mtu)'/>
        </interface>
        """
    }

    /// A read-only image disk on the SCSI controller, at unit `slot`, found in the guest by serial.
    static func disk(path: String, serial: String, slot: Int) -> String {
        """
        <disk type='file' device='disk'>
          <driver name='qemu' type='raw'/>
          \(path.isEmpty ? "" : "<source file='\(escape(path))'/>")
          <target dev='sd\(driveLetters(slot))' bus='scsi'/>
          <address type='drive' controller='0' bus='0' target='0' unit='\(slot)'/>
          <serial>\(escape(serial))</serial>
          <readonly/>
        </disk>
        """
    }

    /// 0 → "a", 25 → "z", 26 → "aa": libvirt's disk target naming.
    static func driveLetters(_ index: Int) -> String {
        let letters = Array("abcdefghijklmnopqrstuvwxyz")
        return index < 26 ? String(letters[index]) : String(letters[index / 26 - 1]) + String(letters[index % 26])
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "'", with: "&apos;")
    }
}
