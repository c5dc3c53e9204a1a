import CLI
import ContainerLogs
import Containers
import Foundation
import Testing

/// The CRI log format both ways: what cocoond writes and what `cocoonctl logs` reads back.
struct ContainerLogTests {
    /// A writer on a log in a fresh temporary directory (the caller removes it).
    static func scratchLog() -> (String, CRILogWriter) {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent(
            "crilog-\(UUID().uuidString.prefix(8))/c.log"
        ).path
        return (path, CRILogWriter(path: path))
    }

    @Test func writesFullAndPartialLinesInCRIFormat() throws {
        let (path, writer) = Self.scratchLog()
        defer { try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent) }
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

    /// `yes` in a container: a megabyte of two-byte lines in one chunk, with a line carried over
    /// from the chunk before. Split in one pass (line by line removal from the front took minutes).
    @Test(.timeLimit(.minutes(1))) func aFloodOfShortLinesIsSplitInOnePass() throws {
        let (path, writer) = Self.scratchLog()
        defer { try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent) }
        writer.write(stream: .stdout, Array("carried-".utf8))
        let flood: [UInt8] = (0..<(1 << 20)).map { $0 % 2 == 0 ? 0x79 : 0x0A }
        writer.write(stream: .stdout, flood)
        writer.write(stream: .stdout, Array("\nlast\n".utf8))
        var reader = CRILogReader()
        let lines = reader.feed(try Data(contentsOf: URL(fileURLWithPath: path))).map(\.text)
        #expect(lines.count == (1 << 19) + 2)
        #expect(lines.first == "carried-y\n" && lines.dropFirst().prefix(3) == ["y\n", "y\n", "y\n"])
        #expect(lines.suffix(2) == ["\n", "last\n"])
    }

    @Test func psQueryFilters() throws {
        let q = try ContainersQuery(pod: "abc", state: "exited", labels: ["app=web"], name: "we")
        #expect(q.request.filter.podSandboxID == "abc" && q.request.filter.state.state == .containerExited)
        #expect(q.request.filter.labelSelector == ["app": "web"] && !q.runningOnly)
        #expect(try ContainersQuery().runningOnly)
        #expect(throws: Error.self) { try ContainersQuery(state: "sleeping") }
    }
}
