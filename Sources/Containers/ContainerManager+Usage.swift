import AgentClient
import Errors
import Spawn

/// One container's usage as the stats calls report it. When its guest was late, the figures are
/// its last good reading (`readAtNs`) reported now (`sampledAtNs`: the CRI timestamps, which a
/// client that samples twice needs to move; its CPU counter stands still, as a frozen VM's does).
public struct UsageSample: Sendable {
    public var record: ContainerRecord
    public var usage: ContainerUsage
    /// When this answer was made (wall clock, ns): the CRI stats' timestamps.
    public var sampledAtNs: Int64
    /// When the guest read the figures (wall clock, ns).
    public var readAtNs: Int64
    /// The guest did not answer within the deadline: the figures are an earlier reading.
    public var late: Bool
}

/// A container's last good reading, kept for when its guest is late.
public struct UsageReading: Sendable {
    public var usage: ContainerUsage
    /// When the guest read it (wall clock, ns).
    public var atNs: Int64
    /// The guest was late at the last try, since then (wall clock, ns).
    public var lateSinceNs: Int64?
}

extension ContainerManager {
    /// How long a stats call waits for a guest that answered before (its last sample stands in when
    /// it is late), and for one that never did.
    static let usageDeadline: Duration = .milliseconds(300)
    static let firstUsageDeadline: Duration = .seconds(2)

    /// Usage of the given containers, every guest asked at once: one silent or slow pod costs a
    /// node-wide stats call at most `usageDeadline`, and its containers are reported from their
    /// last good sample (older timestamps say so). A container removed meanwhile is left out.
    public func usage(of records: [ContainerRecord]) async -> [UsageSample] {
        let samples = await withTaskGroup(of: UsageSample?.self) { group in
            for record in records { group.addTask { await self.sample(record.id) } }
            var out: [UsageSample] = []
            for await sample in group {
                if let sample { out.append(sample) }
            }
            return out
        }
        return samples.sorted { $0.record.createdAtNs < $1.record.createdAtNs }
    }

    /// One container's usage, as `usage(of:)` reads it.
    public func usage(_ idOrPrefix: String) async throws(CocoonError) -> UsageSample {
        let id = try resolve(idOrPrefix)
        guard let sample = await sample(id) else { throw .notFound("container \"\(idOrPrefix)\" not found") }
        return sample
    }

    /// Zeros for a container that is not running (or whose pod just went away); nil once removed.
    func sample(_ id: String) async -> UsageSample? {
        // try?: a refresh that cannot persist leaves the record as it was
        try? await refresh(id)
        guard let record = records[id] else { return nil }
        let now = HostProcess.nowNs()
        // try?: its pod just went away: no usage
        guard record.state == .running, let agent = try? await pods.readyAgent(record.sandboxID).agent else {
            return UsageSample(record: record, usage: ContainerUsage(), sampledAtNs: now, readAtNs: now, late: false)
        }
        let last = usageReadings[id]
        do {
            let usage = try await agent.containerUsage(
                id, timeout: last == nil ? Self.firstUsageDeadline : Self.usageDeadline)
            let at = HostProcess.nowNs()
            if records[id] != nil { usageReadings[id] = UsageReading(usage: usage, atNs: at) }
            return UsageSample(record: records[id] ?? record, usage: usage, sampledAtNs: at, readAtNs: at, late: false)
        } catch {
            let age = last.map { "\((now - $0.atNs) / 1_000_000) ms old" } ?? "none yet"
            logger.debug(
                "guest late with usage; reporting its last sample",
                metadata: ["id": "\(id)", "sandbox": "\(record.sandboxID)", "sample": "\(age)", "error": "\(error)"])
            guard var last else {
                return UsageSample(record: record, usage: ContainerUsage(), sampledAtNs: now, readAtNs: 0, late: true)
            }
            if records[id] != nil {
                last.lateSinceNs = last.lateSinceNs ?? now
                usageReadings[id] = last
            }
            return UsageSample(record: record, usage: last.usage, sampledAtNs: now, readAtNs: last.atNs, late: true)
        }
    }

    /// The container's last usage reading, for verbose status (how old the stats are).
    public func lastUsageReading(_ id: String) -> UsageReading? { usageReadings[id] }
}
