import Testing

@testable import Hypervisor

/// The stall report reads QEMU's human monitor text (lines end in CR LF) and QMP replies.
@Suite struct QEMUStallProbeTests {
    @Test func registersLapicAndIOAPICAreSummarized() {
        let registers =
            "CPU#0\r\nRAX=0000000000000000 RBX=0\r\n"
            + "RIP=ffffffff81a17a0b RFL=00000246 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=1\r\nES =0000\r\n"
        #expect(QEMUStallProbe.cpu(registers) == "vCPU halted IF=1 RIP=ffffffff81a17a0b")
        let masked = registers.replacingOccurrences(of: "RFL=00000246", with: "RFL=00000046")
            .replacingOccurrences(of: "HLT=1", with: "HLT=0")
        #expect(QEMUStallProbe.cpu(masked) == "vCPU running IF=0 RIP=ffffffff81a17a0b")
        #expect(QEMUStallProbe.cpu("") == "")

        let lapic =
            "dumping local APIC state for CPU 0 \r\n\r\nLVT0\t 0x00010700 active-hi edge  masked ExtINT (vec 0)\r\n"
            + "LVTTHMR\t 0x00010000 active-hi edge  masked                      Fixed  (vec 0)\r\n"
            + "LVTT\t 0x000000ec active-hi edge                 one-shot     Fixed  (vec 236)\r\n"
            + "Timer\t DCR=0x3 (divide by 16) initial_count = 5509642 current_count = 0\r\n"
            + "ISR\t (none)\r\nIRR\t 41\r\n\r\nAPR 0x00 TPR 0x10\r\n"
        #expect(
            QEMUStallProbe.lapic(lapic)
                == "LAPIC LVTT 0x000000ec active-hi edge one-shot Fixed (vec 236), Timer DCR=0x3 (divide by 16) "
                + "initial_count = 5509642 current_count = 0, ISR (none), IRR 41")

        let pic =
            "ioapic0: ver=0x20\r\n  pin 23 0x0100000000008824 dest=1 vec=36\r\n  IRR      (none)\r\n"
            + "  Remote IRR 23\r\npic1: irr=00\r\n"
        #expect(QEMUStallProbe.ioapic(pic) == "IOAPIC IRR (none), Remote IRR 23")
    }

    @Test func qmpRepliesAreRead() {
        #expect(QEMUStallProbe.status(#"{"return": {"status": "running", "running": true}}"#) == "QEMU running")
        #expect(QEMUStallProbe.status("garbage") == "QEMU status unknown")
        let devices = #"{"return": [{"name": "virtio-net", "path": "/a"}, {"name": "virtio-serial", "path": "/b"}]}"#
        #expect(QEMUStallProbe.serialPath(devices) == "/b")
        let rx = #"{"return": {"shadow-avail-idx": 1038, "last-avail-idx": 14, "used-idx": 14, "signalled-used": 13}}"#
        #expect(
            QEMUStallProbe.queues([("rx", rx), ("tx", nil)])
                == "agent queues rx avail 1038 taken 14 used 14 signalled 13")
    }

    /// The state a guest left its LAPIC timer in when it fell back to the PIT (seen in CI), against
    /// a working guest's timer, armed or stopped while idle.
    @Test func aGuestThatDisabledItsLAPICTimerIsTold() {
        let broken =
            "LVTT\t 0x000300ec active-hi edge  masked         periodic     Fixed  (vec 236)\r\n"
            + "Timer\t DCR=0x3 (divide by 16) initial_count = 268435455 current_count = 166034638\r\n"
        #expect(QEMUStallProbe.lapicTimerDefect(in: broken)?.contains("disabled its local APIC timer") == true)
        let armed =
            "LVTT\t 0x000000ec active-hi edge                 one-shot     Fixed  (vec 236)\r\n"
            + "Timer\t DCR=0x3 (divide by 16) initial_count = 5509642 current_count = 1431201\r\n"
        #expect(QEMUStallProbe.lapicTimerDefect(in: armed) == nil)
        let stopped =
            "LVTT\t 0x000100ec active-hi edge  masked         one-shot     Fixed  (vec 236)\r\n"
            + "Timer\t DCR=0x3 (divide by 16) initial_count = 0 current_count = 0\r\n"
        #expect(QEMUStallProbe.lapicTimerDefect(in: stopped) == nil)
    }
}
