import CSpawn
import Config
import Foundation
import Testing

@testable import Hypervisor
@testable import Sandboxes

/// Templates: the command lines of a template and its clones, the files a template is saved to, and
/// the handler settings.
@Suite struct TemplateUnitTests {
    let spec = VMSpec(
        id: "0123456789abcdef0123", kernel: "/g/vmlinuz", initrd: "/g/initrd.cpio", agentImage: "/g/agent.img",
        vcpus: 1, memoryMiB: 256, accel: .tcg, stateDir: "/s/x", runDir: "/r/x")

    func line(_ origin: VMOrigin, tap: Int?) -> String {
        var spec = spec
        spec.origin = origin
        spec.nic = VMNic(tapFD: tap == nil ? -1 : 5, mac: "0a:58:0a:00:00:07", mtu: 1450, tapName: "tap0")
        let files = QEMUFiles.Paths(
            kernel: "/proc/self/fd/3", initrd: "/proc/self/fd/4", agentImage: "/proc/self/fd/5",
            console: "/proc/self/fd/6", token: "/proc/self/fd/7", qmpFD: 8, agentFD: 9, tapFD: tap, ramFD: 11)
        return QEMUArguments.make(
            spec: spec, layout: QEMULayout(spec: spec), accel: .tcg, agent: .serial(path: "/r/x/agent.sock"),
            files: files
        ).joined(separator: " ")
    }

    /// Template and clone differ only where they must: RAM shared or private, the clone's tap and
    /// its incoming state; both have the same devices, in the same order, with the template's MAC.
    @Test func templateAndCloneHaveTheSameDevices() {
        let template = line(.template(ramFD: 3), tap: nil)
        let clone = line(.clone(ramFD: 3, state: Data([1])), tap: 10)
        #expect(template.contains("mem-path=/proc/self/fd/11,share=on"))
        #expect(clone.contains("mem-path=/proc/self/fd/11,share=off"))
        #expect(clone.hasSuffix("-S -incoming defer"))
        #expect(!template.contains("-incoming"))
        for l in [template, clone] {
            #expect(l.contains("free-page-reporting=off"))
            #expect(l.contains("mac=02:cc:00:00:00:01"))
            #expect(!l.contains("0a:58:0a:00:00:07"))
            #expect(!l.contains("vhost-user-fs"))
        }
        #expect(!template.contains("-netdev"))
        #expect(clone.contains("-netdev tap,id=net0,fd=10"))
        func devices(_ l: String) -> [String] {
            let words = l.split(separator: " ")
            return zip(words, words.dropFirst()).filter { $0.0 == "-device" }.map {
                String($0.1.split(separator: ",").first ?? "")
            }
        }
        #expect(devices(template) == devices(clone))
        // A plain boot keeps free-page reporting and the pod's own MAC.
        let boot = line(.boot, tap: 10)
        #expect(boot.contains("free-page-reporting=on") && boot.contains("mac=0a:58:0a:00:00:07"))
    }

    /// RAM saved sparse, loaded into a sealed memfd with its checksum checked; a changed byte is
    /// refused.
    @Test func templateRAMRoundTripsAndADamagedFileIsRefused() throws {
        let dir = "/tmp/cocoon-tplunit-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }  // test scratch space
        let size = 8 << 20
        let fd = cocoon_template_ram("unit", UInt64(size))
        #expect(fd >= 0)
        defer { close(fd) }
        var page = [UInt8](repeating: 7, count: 4096)
        #expect(pwrite(fd, &page, page.count, off_t(3 << 20)) == 4096)
        #expect(cocoon_seal_writes(fd) == 0)
        #expect(pwrite(fd, &page, page.count, 0) < 0, "a sealed template cannot be written")
        let path = TemplateFiles.ramPath(dir)
        let (digest, data) = try TemplateFiles.saveRAM(fd, size: size, to: path)
        #expect(data == Int64(1 << 20), "only the chunk with data is stored")
        var st = stat()
        #expect(stat(path, &st) == 0 && st.st_size == size && Int(st.st_blocks) * 512 <= 2 << 20)
        let loaded = try TemplateFiles.loadRAM(from: path, size: size, digest: digest, name: "unit")
        defer { close(loaded) }
        var back = [UInt8](repeating: 0, count: 4096)
        #expect(pread(loaded, &back, 4096, off_t(3 << 20)) == 4096 && back == page)
        #expect(pwrite(loaded, &back, 4096, 0) < 0, "a loaded template is sealed too")

        let out = open(path, O_WRONLY)
        var one: UInt8 = 9
        #expect(pwrite(out, &one, 1, off_t(5 << 20)) == 1)
        close(out)
        #expect(throws: (any Error).self) {
            _ = try TemplateFiles.loadRAM(from: path, size: size, digest: digest, name: "unit")
        }
    }

    @Test func startAndPoolSettings() throws {
        let ok = try ConfigLoader.parse(
            """
            [handlers.fast]
            backend = "qemu"
            start = "template"
            pool_size = 3
            """, source: "t")
        let fast = try #require(ok.handlers["fast"])
        #expect(fast.start == .template && fast.poolSize == 3 && fast.sharedFS == .none)
        #expect(try ConfigLoader.parse("[handlers.x]\nbackend = \"qemu\"", source: "t").handlers["x"]?.start == .cold)
        for bad in [
            "start = \"template\"\nshared_fs = \"virtio-fs\"", "start = \"warm\"", "pool_size = 99",
        ] {
            #expect(throws: (any Error).self) {
                _ = try ConfigLoader.parse("[handlers.x]\nbackend = \"qemu\"\n" + bad, source: "t")
            }
        }
        #expect(throws: (any Error).self) {
            _ = try ConfigLoader.parse("[handlers.x]\nbackend = \"libvirt\"\nstart = \"template\"", source: "t")
        }
    }
}
