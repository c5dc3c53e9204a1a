// cocoon-agent: PID 1 of every pod VM. Sets up the guest, loads the kernel modules the
// channel needs, then serves the agent protocol until asked to power off. Started by cocoond with
// `host ...` (`HostMode`), it is a native pod's agent on the host instead, and exits when asked.
import AgentAPI
import CAgentSys
import Glibc

let startedNs = cocoon_boottime_ns()
// A write to a pipe or socket whose reader is gone fails with EPIPE instead (processes start with
// default dispositions again).
signal(SIGPIPE, SIG_IGN)
// A native pod's agent enters the pod's namespaces first, while it has a single thread.
let hostListenFD: Int32? = HostMode.current.map { host in
    do {
        return try host.enter()
    } catch {
        log("fatal: cannot enter the native pod's namespaces: \(error)")
        exit(1)
    }
}
cocoon_watchdog_install(2)
let cmdline = KernelCommandLine.read()
log("cocoon-agent \(agentVersion) starting (pid \(getpid()))")

if getpid() == 1 {
    GuestSetup.mountBaseFilesystems()
}
let modules = hostListenFD == nil ? ModuleLoader.loadAll(transport: cmdline.transport, bus: cmdline.bus) : []
let modulesLoadedNs = cocoon_boottime_ns()

var boot = Cocoon_Agent_V4_BootReport()
boot.agentStartedNs = startedNs
boot.modulesLoadedNs = modulesLoadedNs
boot.modules = modules
boot.transport = cmdline.transport.rawValue

do {
    let channel = try hostListenFD.map { AgentChannel.unix(listenFD: $0) } ?? AgentChannel.open(cmdline)
    boot.channelOpenNs = cocoon_boottime_ns()
    log("channel \(cmdline.transport.rawValue) open after \((boot.channelOpenNs - startedNs) / 1_000_000) ms")
    var server = AgentServer(channel: channel, boot: boot)
    server.run()
} catch {
    log("fatal: \(error)")
}
// PID 1 must not exit: the kernel would panic. Power off instead (on the host: just end).
GuestSetup.powerOff()
