import BootContract
import Foundation
import Hypervisor
import Models
import Synchronization

/// VMs without QEMU: `boot` hands out handles (or fails when told to), a test can make a VM exit,
/// and every call is recorded.
final class FakeHypervisor: Hypervisor, Sendable {
    struct State {
        var running: Set<String> = []
        var booted: [VMSpec] = []
        var stopped: [String] = []
        var bootError: HypervisorError?
        var attached: [String: Int] = [:]
        var reaped: [String] = []
    }
    let backend = Backend.qemu
    let opensTapByName = false
    let sharesDirectories = false
    let makesTemplates = false
    let state = Mutex(State())

    func boot(_ spec: VMSpec) async throws(HypervisorError) -> VMHandle {
        let error = state.withLock { s -> HypervisorError? in
            s.booted.append(spec)
            if s.bootError == nil { s.running.insert(spec.vmName) }
            return s.bootError
        }
        if let error { throw error }
        return VMHandle(
            backend: .qemu, name: spec.vmName, pid: 4242, accel: .tcg,
            agent: .serial(path: spec.runDir + "/agent.sock"), controlSocket: nil,
            consoleLog: spec.stateDir + "/console.log", runDir: spec.runDir, launchedAtNs: 1)
    }

    func stop(_ vm: VMHandle, timeout: Duration) async {
        state.withLock {
            $0.running.remove(vm.name)
            $0.stopped.append(vm.name)
        }
    }
    func noteKVMBoot(_ spec: VMSpec, failure: String?) async {}
    func joinPodCgroup(_ vm: VMHandle, parent: String, vcpus: Int, memoryMiB: Int) async throws(HypervisorError)
        -> VMHandle
    { vm }
    func kill(_ vm: VMHandle) async { _ = state.withLock { $0.running.remove(vm.name) } }
    func wait(_ vm: VMHandle, timeout: Duration) async -> Bool { !state.withLock { $0.running.contains(vm.name) } }
    func describe(_ vm: VMHandle) async -> VMStatus {
        state.withLock { $0.running.contains(vm.name) } ? .running(pid: vm.pid) : .exited
    }
    func attachDisk(_ vm: VMHandle, path: String, serial: String, slot: Int) async throws(HypervisorError) {
        state.withLock { $0.attached[serial] = slot }
    }
    func detachDisk(_ vm: VMHandle, serial: String, slot: Int) async throws(HypervisorError) {
        _ = state.withLock { $0.attached.removeValue(forKey: serial) }
    }
    func saveTemplate(_ vm: VMHandle, stateFD: Int32) async throws(HypervisorError) {
        throw .invalidSpec("the fake hypervisor makes no templates")
    }
    func reapOrphan(vmName: String, cgroupParent: String?) async {
        state.withLock {
            $0.reaped.append(vmName)
            $0.running.remove(vmName)
        }
    }
    /// The VM ends by itself (a guest crash, a kill from outside).
    func crash(_ name: String) { _ = state.withLock { $0.running.remove(name) } }
}
