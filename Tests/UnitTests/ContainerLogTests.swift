import CLI
import Containers
import Foundation
import Testing

/// The CRI log format both ways: what cocoond writes and what `cocoonctl logs` reads back.
struct ContainerLogTests {
    @Test func writesFullAndPartialLinesInCRIFormat() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent(
            "crilog-\(UUID().uuidString.prefix(8))/c.log"
        ).path
        defer { try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent) }
        let writer = CRILogWriter(path: path)
        writer.write(stream: .stdout, Array("one\ntw".utf8))
        writer.write(stream: .stderr, Array("err\n".utf8))
        writer.write(stream: .stdout, Array("o\n".utf8))
        writer.write(stream: .stdout, [UInt8](repeating: 0x61, count: CRILog.maxLine + 10))
        writer.finish()
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map(String.init)
        #expect(lines.count == 5)
        #expect(
            lines[0].hasSuffix(" stdout F one") && lines[1].hasSuffix(" stderr F err")
                && lines[2].hasSuffix(" stdout F two"))
        #expect(lines[3].contains(" stdout P ") && lines[4].contains(" stdout P "))
        let stamp = String(lines[0].split(separator: " ")[0])
        #expect(stamp.count == 30 && stamp.hasSuffix("Z") && stamp.dropFirst(19).first == ".", "\(stamp)")

        var reader = CRILogReader()
        let read = reader.feed(
            try Data(contentsOf: URL(fileURLWithPath: path)) + Data("2026-01-01T00:00:00.000000000Z stdout F !\n".utf8))
        #expect(read.map(\.text).prefix(3) == ["one\n", "err\n", "two\n"])
        #expect(
            read.last?.text == String(repeating: "a", count: CRILog.maxLine + 10) + "!\n",
            "partial pieces join up to their F line")
    }

    @Test func psQueryFilters() throws {
        let q = try ContainersQuery(pod: "abc", state: "exited", labels: ["app=web"], name: "we")
        #expect(q.request.filter.podSandboxID == "abc" && q.request.filter.state.state == .containerExited)
        #expect(q.request.filter.labelSelector == ["app": "web"] && !q.runningOnly)
        #expect(try ContainersQuery().runningOnly)
        #expect(throws: Error.self) { try ContainersQuery(state: "sleeping") }
    }
}
