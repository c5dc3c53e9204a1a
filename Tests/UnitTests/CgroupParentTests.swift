import CRIAPI
import Foundation
import Testing

@testable import CRI
@testable import Hypervisor

/// CRI's `cgroup_parent` in both of the kubelet's forms becomes a hierarchy path; anything else is
/// refused with a message (RunPodSandbox answers INVALID_ARGUMENT).
@Suite struct CgroupParentTests {
    func resolved(_ parent: String, _ driver: VMCgroup.Driver = .auto) -> String?? {
        if case .success(let path) = VMCgroup.resolveParent(parent, driver: driver) { return .some(path) }
        return .none
    }

    @Test func bothDriversFormsBecomeHierarchyPaths() {
        #expect(resolved("") == .some(nil))
        #expect(resolved("/kubepods/burstable/pod12") == .some("/kubepods/burstable/pod12"))
        #expect(resolved("//kubepods//pod12/") == .some("/kubepods/pod12"))
        #expect(
            resolved("kubepods-burstable-pod12.slice")
                == .some("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod12.slice"))
        #expect(resolved("kubepods.slice", .systemd) == .some("/kubepods.slice"))
        #expect(resolved("-.slice") == .some(nil))
        #expect(VMCgroup.path(forVM: "cocoon-1", parent: "/kubepods/pod12") == "/kubepods/pod12/cocoon-1")
        #expect(VMCgroup.path(forVM: "cocoon-1") == "/cocoon/cocoon-1")
    }

    @Test func whatIsNoCgroupNameIsRefused() {
        for bad in ["/kubepods/../../etc", "/a/./b", "relative/path", "a--b.slice", "a-.slice", "/with space", "x\n"] {
            #expect(resolved(bad) == .none, "\(bad)")
        }
        #expect(resolved("/kubepods/pod1", .systemd) == .none, "the systemd driver takes slice names only")
        #expect(resolved("kubepods-pod1.slice", .cgroupfs) == .none, "the cgroupfs driver takes paths only")
    }
}

/// RuntimeConfig tells the kubelet the configured driver (it picks its own from this answer).
@Suite struct RuntimeConfigDriverTests {
    @Test func theConfiguredDriverIsTheAnswer() {
        #expect(RuntimeService.cgroupDriver(.systemd) == .systemd)
        #expect(RuntimeService.cgroupDriver(.cgroupfs) == .cgroupfs)
        let booted = FileManager.default.fileExists(atPath: "/run/systemd/system")
        #expect(RuntimeService.cgroupDriver(.auto) == (booted ? .systemd : .cgroupfs))
    }
}
