import AgentAPI
import AgentService
import CAgentSys
import ContainerCore
import ContainerLogs
import FoundationEssentials
import Glibc
import Models

/// The pod's containers inside the guest: each one's root filesystem (an overlay of its image
/// disk under a tmpfs upper), copied file mounts, cgroup and processes; the stdout/stderr pipes of
/// every process, read by the agent's poll loop and sent to the host as events; and exit statuses.
struct GuestContainers {
    enum State { case created, running, exited }

    struct Container {
        var spec: ContainerSpec
        var imageSerial: String
        var dir: String
        var cgroup: Cgroup?
        var pid: Int32 = 0
        var state = State.created
        var exitCode: Int32 = 0
        var oomKilled = false
        var execs: [String: Int32] = [:]
        var stdin = false
        var tty = false
        /// Whose PID namespace it is born in (decided at start: the pod's pause or a target's process).
        var pidNamespace = Cocoon_Agent_V4_PIDNamespace.pidOwn
        var pidTarget = ""
        /// The CRI log this agent writes (a native pod's), else nil: the host writes it.
        var log: CRILogWriter?
    }

    /// Whose process a pid or pipe is; `execID` is empty for the container's own process.
    struct Owner: Hashable {
        var containerID: String
        var execID: String
    }

    private(set) var containers: [String: Container] = [:]
    private var processes: [Int32: Owner] = [:]
    var pipes: [Int32: (Owner, Cocoon_Agent_V4_ProcessOutput.Stream)] = [:]
    /// The stdin (pipe or terminal) the host writes, per process started with stdin.
    var inputs: [Owner: ProcessInput] = [:]
    /// The terminal of each process started with a tty, for resizes.
    var terminals: [Owner: Int32] = [:]
    /// Flow control of each process started with an output window.
    var windows: [Owner: OutputWindow] = [:]
    /// Exit events held until the process's output has all been sent (windowed processes).
    var heldExits: [Owner: Cocoon_Agent_V4_Event] = [:]
    private var disks = DiskMounts()
    /// The pod's pause process (PID 1 of the PID namespace its POD-mode containers share), or 0.
    var pause: Int32 = 0
    private static let cgroupRoot = PodSettings.cgroupRoot

    /// Output pipes to poll: those whose process may send more now.
    var pipeFDs: [Int32] { pipes.filter { windows[$0.value.0]?.room ?? 1 > 0 }.map(\.key) }

    // MARK: requests

    mutating func create(_ r: Cocoon_Agent_V4_CreateContainerRequest) throws(AgentFailure) {
        try GuestContainers.validateID(r.id, field: "id")
        guard containers[r.id] == nil else {
            throw AgentFailure(code: .failedPrecondition, message: "container \(r.id) already exists in the guest")
        }
        let process = try GuestContainers.process(r.process)
        try checkPIDNamespace(r)
        try GuestContainers.checkPaths(r)
        let mounting = cocoon_boottime_ns()
        let lower = try disks.mount(serial: r.imageDiskSerial)
        if cocoon_boottime_ns() - mounting > 2_000_000_000 {
            log("slow image disk \(r.imageDiskSerial): \((cocoon_boottime_ns() - mounting) / 1_000_000) ms to mount")
        }
        let dir = HostMode.runDir + "/containers/\(r.id)"
        for sub in ["upper", "work", "rootfs", "mounts"] { mkdirs(dir + "/" + sub) }
        let options = "lowerdir=\(lower),upperdir=\(dir)/upper,workdir=\(dir)/work"
        guard mount("overlay", dir + "/rootfs", "overlay", 0, options) == 0 else {
            let error = SystemError("mount overlay")
            GuestContainers.removeTree(dir)
            throw .internal("root filesystem for \(r.id): \(error)")
        }
        var spec = ContainerSpec(id: r.id, rootfs: dir + "/rootfs", process: process)
        spec.hostname = r.hostname.isEmpty ? nil : r.hostname
        spec.readOnlyRootfs = r.readOnlyRootfs
        spec.resources = GuestContainers.resources(r.resources)
        spec.newIPCNamespace = false  // the pod's IPC namespace is the VM's
        spec.allDevices = r.allDevices
        if r.customPaths {
            spec.maskedPaths = r.maskedPaths
            spec.readonlyPaths = r.readonlyPaths
        }
        do {
            for (index, fileMount) in r.mounts.enumerated() {
                let source = try FileMountWriter.write(fileMount, into: "\(dir)/mounts/\(index)")
                spec.mounts.append(
                    Mount(source: source, destination: fileMount.destination, readOnly: fileMount.readOnly))
            }
            for shared in r.sharedMounts {
                spec.mounts.append(try SharedVolumes.mount(for: shared, privileged: r.allDevices))
            }
            let own = Set(
                (r.mounts.map(\.destination) + r.sharedMounts.map(\.destination)).map(GuestContainers.normalized))
            for file in PodIdentityFiles.mounts(excluding: own) {
                spec.mounts.append(Mount(source: file.source, destination: file.destination, readOnly: false))
            }
        } catch {
            umount2(dir + "/rootfs", Int32(MNT_DETACH))
            GuestContainers.removeTree(dir)
            throw error
        }
        spec.cgroupPath = "\(GuestContainers.cgroupRoot)/\(r.id)"
        var container = Container(spec: spec, imageSerial: r.imageDiskSerial, dir: dir)
        (container.stdin, container.tty) = (r.stdin, r.tty)
        (container.pidNamespace, container.pidTarget) = (r.pidNamespace, r.pidTargetID)
        container.log = r.logPath.isEmpty ? nil : CRILogWriter(path: r.logPath, followsPath: true)
        containers[r.id] = container
    }

    mutating func start(_ id: String) throws(AgentFailure) -> Int32 {
        guard var container = containers[id] else { throw .notFound("container \(id) not found in the guest") }
        guard container.state == .created else {
            throw .precondition("container \(id) is \(container.state), not created")
        }
        let t0 = cocoon_boottime_ns()
        let cgroup: Cgroup
        do {
            cgroup = try Cgroup.create(container.spec.cgroupPath ?? "", resources: container.spec.resources)
            if !container.spec.allDevices { try cgroup.restrictDevices() }
        } catch {
            throw .internal("cgroup for \(id): \(error)")
        }
        container.cgroup = cgroup
        do {
            (container.spec.newPIDNamespace, container.spec.pidNamespaceOf) = try pidNamespace(for: container)
        } catch {
            // try?: an empty cgroup of a container that did not start; removed with the container
            try? cgroup.remove()
            container.cgroup = nil
            throw error
        }
        let t1 = cocoon_boottime_ns()
        let owner = Owner(containerID: id, execID: "")
        let options = StdioOptions(stdin: container.stdin, tty: container.tty, window: 0, ptmx: nil)
        let pid = try withStdio(owner, options) { stdio throws(ContainerCoreError) in
            try ContainerLauncher.start(container.spec, stdio: stdio, cgroup: cgroup)
        }
        // A slow start says where its time went (the host gives StartContainer 30 s).
        let t2 = cocoon_boottime_ns()
        if t2 - t0 > 2_000_000_000 {
            log(
                "slow start of \(id.prefix(12)): cgroup \((t1 - t0) / 1_000_000) ms, launch \((t2 - t1) / 1_000_000) ms"
            )
        }
        container.pid = pid
        container.state = .running
        containers[id] = container
        processes[pid] = owner
        return pid
    }

    mutating func exec(_ r: Cocoon_Agent_V4_ExecRequest) throws(AgentFailure) -> Int32 {
        guard var container = containers[r.containerID] else {
            throw .notFound("container \(r.containerID) not found in the guest")
        }
        guard container.state == .running else { throw .precondition("container \(r.containerID) is not running") }
        try GuestContainers.validateID(r.execID, field: "exec_id")
        guard container.execs[r.execID] == nil else { throw .precondition("exec \(r.execID) already exists") }
        let process = try GuestContainers.process(r.process)
        let owner = Owner(containerID: r.containerID, execID: r.execID)
        let options = StdioOptions(
            stdin: r.stdin, tty: r.tty, window: Int(min(r.outputWindow, 16 << 20)),
            ptmx: "/proc/\(container.pid)/root/dev/ptmx",
            size: r.width > 0 && r.height > 0
                ? (UInt16(clamping: r.height), UInt16(clamping: r.width)) : nil)
        let pid = try withStdio(owner, options) { stdio throws(ContainerCoreError) in
            try ContainerLauncher.exec(
                process, into: container.pid, rootfs: container.spec.rootfs, stdio: stdio, cgroup: container.cgroup)
        }
        container.execs[r.execID] = pid
        containers[r.containerID] = container
        processes[pid] = owner
        return pid
    }

    /// Signals a container's first process or one of its execs. A signal the first process (PID 1 of
    /// its namespace) does not catch yet is held and sent once it does (`SignalDelivery`).
    mutating func signal(_ r: Cocoon_Agent_V4_SignalRequest) throws(AgentFailure) {
        guard let container = containers[r.containerID] else {
            throw .notFound("container \(r.containerID) not found in the guest")
        }
        let pid = r.execID.isEmpty ? container.pid : (container.execs[r.execID] ?? 0)
        guard pid > 0, processes[pid] != nil else { return }  // already exited: nothing to signal
        guard r.signal > 0, r.signal < 65 else { throw .invalid("signal \(r.signal) is not valid") }
        if r.signal == SIGKILL { heldSignals.removeAll { $0.pid == pid } }
        if r.execID.isEmpty, r.signal != SIGKILL,
            !heldSignals.contains(where: { $0.pid == pid && $0.signal == r.signal }),
            SignalDelivery.decide(signal: r.signal, pid1Status: readSmallFile("/proc/\(pid)/status") ?? "") == .wait
        {
            heldSignals.append((pid, r.signal))
            return
        }
        if kill(pid, r.signal) != 0 && errno != ESRCH { throw .internal("kill \(pid): \(SystemError("kill"))") }
    }

    /// Signals held for a PID 1 that did not catch them yet.
    private var heldSignals: [(pid: Int32, signal: Int32)] = []
    var holdsSignals: Bool { !heldSignals.isEmpty }

    /// Sends each held signal whose process now catches it; forgets those whose process is gone.
    mutating func deliverHeldSignals() {
        heldSignals.removeAll { held in
            guard processes[held.pid] != nil, let status = readSmallFile("/proc/\(held.pid)/status") else {
                return true
            }
            guard SignalDelivery.decide(signal: held.signal, pid1Status: status) == .now else { return false }
            kill(held.pid, held.signal)
            return true
        }
    }

    func status(_ id: String) throws(AgentFailure) -> Cocoon_Agent_V4_ContainerStatusResponse {
        guard let c = containers[id] else { throw .notFound("container \(id) not found in the guest") }
        var s = Cocoon_Agent_V4_ContainerStatusResponse()
        switch c.state {
        case .created: s.state = .created
        case .running: s.state = .running
        case .exited: s.state = .exited
        }
        s.pid = c.pid
        s.exitCode = c.exitCode
        s.oomKilled = c.oomKilled
        if let stats = c.cgroup?.stats() {
            s.cpuUsageNs = stats.cpuUsageNanos
            s.memoryBytes = stats.memoryBytes
            s.memoryWorkingSetBytes = stats.memoryWorkingSetBytes
            s.pids = stats.pids
        }
        return s
    }

    /// Kills what runs, waits for the container's process, and removes its filesystem and cgroup.
    mutating func remove(_ id: String) -> [Outgoing] {
        guard let container = containers[id] else { return [] }
        var events: [Outgoing] = []
        if container.state == .running {
            container.cgroup?.killAll()
            kill(container.pid, SIGKILL)
            var status: Int32 = 0
            // blocking: the agent's own thread (not a cooperative pool); just killed
            if waitpid(container.pid, &status, 0) == container.pid {
                events += reaped(pid: container.pid, status: status)
            }
        }
        for (_, pid) in container.execs where processes[pid] != nil { kill(pid, SIGKILL) }
        container.log?.finish()
        umount2(container.dir + "/rootfs", Int32(MNT_DETACH))
        GuestContainers.removeTree(container.dir)
        if let cgroup = container.cgroup {
            for _ in 0..<100 {
                // try?: busy while processes exit: retried
                if (try? cgroup.remove()) != nil { break }
                usleep(10_000)
            }
        }
        containers[id] = nil
        return events
    }

    mutating func updateResources(_ r: Cocoon_Agent_V4_UpdateResourcesRequest) throws(AgentFailure) {
        guard var container = containers[r.id] else { throw .notFound("container \(r.id) not found in the guest") }
        container.spec.resources = GuestContainers.resources(r.resources)
        if container.state == .running, let cgroup = container.cgroup {
            do {
                try cgroup.apply(container.spec.resources)
            } catch {
                throw .internal("update resources of \(r.id): \(error)")
            }
        }
        containers[r.id] = container
    }

    mutating func unmountDisk(_ serial: String) throws(AgentFailure) {
        if let user = containers.values.first(where: { $0.imageSerial == serial }) {
            throw .precondition("disk \(serial) is still used by container \(user.spec.id)")
        }
        try disks.unmount(serial: serial)
    }

    // MARK: processes and output

    /// A child ended: its remaining output, then its exit event.
    mutating func reaped(pid: Int32, status: Int32) -> [Outgoing] {
        if pid == pause { pauseEnded(status) }
        guard let owner = processes.removeValue(forKey: pid) else { return [] }
        var events: [Outgoing] = []
        releaseInput(owner)
        let code = WaitStatus.exitCode(status)
        var exit = Cocoon_Agent_V4_ProcessExit()
        exit.containerID = owner.containerID
        exit.execID = owner.execID
        exit.exitCode = code
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        exit.exitedAtNs = Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
        if var container = containers[owner.containerID] {
            if owner.execID.isEmpty {
                // Without a PID namespace of its own nothing ends the rest with its process.
                if !container.spec.newPIDNamespace { container.cgroup?.killAll() }
                container.state = .exited
                container.exitCode = code
                container.oomKilled = (container.cgroup?.stats().oomKills ?? 0) > 0
                exit.oomKilled = container.oomKilled
            } else {
                container.execs[owner.execID] = nil
            }
            containers[owner.containerID] = container
        }
        var event = Cocoon_Agent_V4_Event()
        event.exit = exit
        let outputs = pipes.filter({ $0.value.0 == owner }).map(\.key)
        if windows[owner] != nil, !outputs.isEmpty {
            // Flow-controlled: the exit follows the last of the output, sent as the window allows;
            // what a pipe holds now is the end of it (a background child keeping it open adds nothing).
            heldExits[owner] = event
            for fd in outputs { events += drain(fd) }
        } else {
            for fd in outputs { events += drain(fd) }
            windows[owner] = nil
            events.append(.event(event))
        }
        if owner.execID.isEmpty { containers[owner.containerID]?.log?.finish() }
        return events
    }

    /// Reads what a pipe holds now, as far as its window allows and at most `drainBudget` bytes per
    /// call (a process writing without pause must not keep the loop from everything else); closes
    /// it at EOF, and then sends its process's held exit once no output of it is left.
    mutating func drain(_ fd: Int32) -> [Outgoing] {
        guard let (owner, stream) = pipes[fd] else { return [] }
        var events: [Outgoing] = []
        var budget = Self.drainBudget
        let header = StreamFrame.Header.output(containerID: owner.containerID, execID: owner.execID, stream: stream)
        while budget > 0 {
            let room = min(windows[owner]?.room ?? 65536, budget)
            if room == 0 { return events }
            let (frame, n) = StreamFrame.read(header, atMost: room) { read(fd, $0.baseAddress, $0.count) }
            if let frame {
                if owner.execID.isEmpty, let log = containers[owner.containerID]?.log {
                    log.write(stream: stream == .stderr ? .stderr : .stdout, Array(frame.payload))
                }
                windows[owner]?.sent(n)
                budget -= n
                events.append(.stream(frame))
                continue
            }
            if n < 0 && errno == EINTR { continue }
            // An exited process whose exit is held: an empty pipe is the end of its output.
            if n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK) || heldExits[owner] != nil {
                close(fd)
                pipes[fd] = nil
                if !pipes.values.contains(where: { $0.0 == owner }), let exit = heldExits.removeValue(forKey: owner) {
                    windows[owner] = nil
                    events.append(.event(exit))
                }
            }
            return events
        }
        return events
    }

    static let drainBudget = 256 << 10

    // MARK: helpers

    static func removeTree(_ path: String) {
        guard let children = directoryEntries(path) else {
            unlink(path)
            return
        }
        for child in children {
            let full = path + "/" + child
            var st = stat()
            if lstat(full, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR { removeTree(full) } else { unlink(full) }
        }
        rmdir(path)
    }
}
