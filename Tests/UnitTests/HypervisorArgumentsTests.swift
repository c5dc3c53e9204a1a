import Testing

@testable import Hypervisor

@Suite struct HypervisorArgumentsTests {
    let spec = VMSpec(
        id: "0123456789abcdef0123", kernel: "/g/vmlinuz", initrd: "/g/initrd.cpio", agentImage: "/g/agent,1.img",
        vcpus: 2, memoryMiB: 384, accel: .auto,
        extraKernelArgs: "loglevel=7", stateDir: "/s/x", runDir: "/r/x")
    let files = QEMUFiles.Paths(
        kernel: "/proc/self/fd/3", initrd: "/proc/self/fd/4", agentImage: "/proc/self/fd/5", console: "/proc/self/fd/6",
        token: "/proc/self/fd/7", qmpFD: 8, agentFD: 9)

    @Test func qemuMicrovmUnderTCG() {
        let args = QEMUArguments.make(
            spec: spec, layout: QEMULayout(spec: spec), accel: .tcg, agent: .serial(path: "/r/x/agent.sock"),
            files: files)
        let line = args.joined(separator: " ")
        #expect(line.contains("-M microvm,rtc=on -accel tcg,tb-size=512 -cpu max,-erms,-fsrm"))
        #expect(line.contains("-smp 2 -m 384M"))
        #expect(line.contains("-name cocoon-0123456789ab,process=cocoon-0123456789ab"))
        #expect(line.contains("tsc_early_khz=\(HostTSC.khz) tsc=reliable"))
        #expect(line.contains("cocoon.transport=serial cocoon.bus=mmio loglevel=7"))
        // Listening sockets cocoond made: QEMU touches no path in the run directory.
        #expect(line.contains("-chardev socket,id=agent,fd=9,server=on,wait=off"))
        #expect(line.contains("-chardev socket,id=qmp,fd=8,server=on,wait=off -mon chardev=qmp,mode=control"))
        // Every file QEMU reads or writes is a descriptor the daemon opened (QEMU runs as the VM's user).
        #expect(line.contains("-serial file:/proc/self/fd/6"))
        #expect(line.contains("-kernel /proc/self/fd/3 -initrd /proc/self/fd/4"))
        #expect(line.contains("-fw_cfg name=opt/io.cocoon/agent-token,file=/proc/self/fd/7"))
        #expect(!line.contains("/g/") && !line.contains("/s/x"))
        #expect(
            line.contains("-sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"))
        #expect(!args.contains("-daemonize") && args.contains("-no-reboot"), "seccomp's spawn=deny forbids the fork")
        #expect(
            line.contains(
                "-drive file=/proc/self/fd/5,if=none,id=agent-disk,format=raw,readonly=on -device "
                    + "virtio-blk-device,drive=agent-disk"
            ))
        #expect(line.contains("virtio-balloon-device,free-page-reporting=on"))
    }

    @Test func hostTSCRateFromCpuinfo() {
        #expect(HostTSC.parse(cpuinfo: "processor\t: 0\ncpu MHz\t\t: 2445.404\ncache size\t: 1 KB\n") == 2_445_404)
        #expect(HostTSC.parse(cpuinfo: "cpu MHz : 0.1\n") == nil)
        #expect(HostTSC.parse(cpuinfo: "nothing here") == nil)
    }

    @Test func qemuWithKVMAndVsock() {
        let args = QEMUArguments.make(
            spec: spec, layout: QEMULayout(spec: spec), accel: .kvm, agent: .vsock(cid: 77, port: 1024), files: files)
        let line = args.joined(separator: " ")
        #expect(line.contains("-M microvm,rtc=on -accel kvm -cpu host"))
        #expect(line.contains("vhost-vsock-device,guest-cid=77"))
        #expect(line.contains("cocoon.transport=vsock cocoon.vsock_port=1024"))
        #expect(!line.contains("virtserialport"))
    }

    static let libvirtFiles = LibvirtJail.Files(
        agentSocket: "/r/x/agent.sock", consoleLog: "/s/x/console.log", token: "/r/x/token", diskDir: "/s/vm-disks/x")
    static let vmUser = VMUser(uid: 1_500_007, gid: 1_500_007)

    @Test func libvirtDomain() {
        let xml = LibvirtDomainXML.make(spec: spec, accel: .tcg, user: Self.vmUser, files: Self.libvirtFiles)
        #expect(xml.contains("<domain type='qemu'>"))
        // The VM's own user, no relabelling; CPU as the qemu backend's cgroup (vCPUs + 0.5).
        #expect(xml.contains("<seclabel type='static' model='dac' relabel='no'><label>+1500007:+1500007</label>"))
        #expect(
            xml.contains("<global_period>100000</global_period>") && xml.contains("<global_quota>250000</global_quota>")
        )
        // The console through virtlogd (rotated, capped), the token from the run dir's copy.
        #expect(xml.contains("<serial type='null'><log file='/s/x/console.log' append='off'/>"))
        #expect(xml.contains("file='/r/x/token'/></sysinfo>"))
        #expect(LibvirtDomainXML.disk(path: "/s/vm-disks/x/s1.img", serial: "s1", slot: 1).contains("unit='1'"))
        #expect(xml.contains("<memory unit='MiB'>384</memory>") && xml.contains("<vcpu>2</vcpu>"))
        #expect(xml.contains("cocoon.bus=pci") && !xml.contains("pci=off"))
        #expect(xml.contains("<source mode='bind' path='/r/x/agent.sock'/>"))
        #expect(xml.contains("<source file='/g/agent,1.img'/>") && xml.contains("<readonly/>"))
        #expect(xml.contains("<memballoon model='virtio' freePageReporting='on'/>"))
        #expect(
            LibvirtDomainXML.make(spec: spec, accel: .kvm, user: Self.vmUser, files: Self.libvirtFiles).contains(
                "<domain type='kvm'>"))
        #expect(LibvirtDomainXML.escape("a'<&>") == "a&apos;&lt;&amp;&gt;")
    }

    @Test func vsockContextIDsAreStableAndValid() {
        let a = VsockSupport.cid(for: "abc"), b = VsockSupport.cid(for: "abd")
        #expect(a == VsockSupport.cid(for: "abc") && a != b && a >= 3)
    }
}
