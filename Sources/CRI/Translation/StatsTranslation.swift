import AgentClient
import CRIAPI
import Containers
import Sandboxes
import Spawn

/// Container and pod usage (cgroup figures from the guest) as CRI stats messages.
enum StatsTranslation {
    /// A container's stats, stamped with the time its guest read them (older when the guest was late).
    static func container(_ sample: UsageSample) -> Runtime_V1_ContainerStats {
        let (record, usage, now) = (sample.record, sample.usage, sample.sampledAtNs)
        var s = Runtime_V1_ContainerStats()
        s.attributes = .with {
            $0.id = record.id
            $0.metadata = .with { m in
                m.name = record.name
                m.attempt = record.attempt
            }
            $0.labels = record.labels
            $0.annotations = record.annotations
        }
        s.cpu = .with {
            $0.timestamp = now
            $0.usageCoreNanoSeconds = .with { v in v.value = usage.cpuUsageNs }
        }
        s.memory = .with {
            $0.timestamp = now
            $0.workingSetBytes = .with { v in v.value = usage.memoryWorkingSetBytes }
            $0.usageBytes = .with { v in v.value = usage.memoryBytes }
        }
        return s
    }

    static func pod(_ sandbox: SandboxRecord, _ containers: [Runtime_V1_ContainerStats], processes: UInt64)
        -> Runtime_V1_PodSandboxStats
    {
        let now = HostProcess.nowNs()
        var s = Runtime_V1_PodSandboxStats()
        s.attributes = .with {
            $0.id = sandbox.id
            $0.metadata = .with { m in
                m.name = sandbox.metadata.name
                m.namespace = sandbox.metadata.namespace
                m.uid = sandbox.metadata.uid
                m.attempt = sandbox.metadata.attempt
            }
            $0.labels = sandbox.labels
            $0.annotations = sandbox.annotations
        }
        s.linux = .with {
            $0.cpu = .with { c in
                c.timestamp = now
                c.usageCoreNanoSeconds = .with { v in
                    v.value = containers.reduce(0) { $0 + $1.cpu.usageCoreNanoSeconds.value }
                }
            }
            $0.memory = .with { m in
                m.timestamp = now
                m.workingSetBytes = .with { v in v.value = containers.reduce(0) { $0 + $1.memory.workingSetBytes.value }
                }
                m.usageBytes = .with { v in v.value = containers.reduce(0) { $0 + $1.memory.usageBytes.value } }
            }
            $0.process = .with { p in
                p.timestamp = now
                p.processCount = .with { v in v.value = processes }
            }
            $0.containers = containers
        }
        return s
    }
}
