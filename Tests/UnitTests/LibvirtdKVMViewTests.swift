import Foundation
import Hypervisor
import Testing

/// libvirt counts KVM as usable when its QEMU user may open /dev/kvm read-write: the judgement
/// `cocoonctl info` reports beside the real-boot decision.
struct LibvirtdKVMViewTests {
    let qemuUser: uid_t = 999
    let qemuGroup: gid_t = 995
    let kvmGroup: gid_t = 994

    @Test func debianKVMNodeIsUsableThroughTheKVMGroupOnly() {
        let kvm = (mode: mode_t(0o020660), owner: uid_t(0), group: kvmGroup)
        #expect(
            LibvirtdKVMView.readWrite(
                mode: kvm.mode, owner: kvm.owner, group: kvm.group, uid: qemuUser, groups: [qemuGroup, kvmGroup]))
        #expect(
            !LibvirtdKVMView.readWrite(
                mode: kvm.mode, owner: kvm.owner, group: kvm.group, uid: qemuUser, groups: [qemuGroup]))
    }

    @Test func aDevNullBindLooksUsableAndTheSetupHostNodeDoesNot() {
        // /dev/null bound over /dev/kvm (world read-write): libvirt thinks KVM is usable, QEMU finds none.
        #expect(LibvirtdKVMView.readWrite(mode: 0o020666, owner: 0, group: 0, uid: qemuUser, groups: [qemuGroup]))
        // scripts/setup-host's mode-0000 node: nobody but root opens it.
        #expect(!LibvirtdKVMView.readWrite(mode: 0o020000, owner: 0, group: 0, uid: qemuUser, groups: [qemuGroup]))
        #expect(LibvirtdKVMView.readWrite(mode: 0o020000, owner: 0, group: 0, uid: 0, groups: [0]))
    }

    @Test func theOwnerBitsDecideForTheOwnerEvenWhenOthersMayMore() {
        #expect(
            !LibvirtdKVMView.readWrite(mode: 0o020066, owner: qemuUser, group: 0, uid: qemuUser, groups: [qemuGroup]))
    }
}
