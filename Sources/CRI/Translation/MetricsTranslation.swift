import AgentClient
import CRIAPI
import Containers
import Errors
import Sandboxes
import Spawn

/// The cAdvisor metrics the kubelet asks a CRI runtime for (ListMetricDescriptors and
/// ListPodSandboxMetrics, when it takes pod and container stats from CRI), read from each
/// container's cgroup in the guest. Labels as CRI-O gives them: container id, name and image.
enum MetricsTranslation {
    static let labelKeys = ["id", "name", "image"]

    struct Descriptor: Sendable {
        var name: String
        var help: String
        var type: Runtime_V1_MetricType
        var value: @Sendable (ContainerUsage) -> UInt64
    }

    static let all: [Descriptor] = [
        Descriptor(
            name: "container_cpu_usage_seconds_total", help: "Cumulative cpu time consumed in seconds.", type: .counter
        ) {
            $0.cpuUsageNs / 1_000_000_000
        },
        Descriptor(
            name: "container_memory_usage_bytes",
            help: "Current memory usage in bytes, including all memory regardless of when it was accessed.",
            type: .gauge
        ) {
            $0.memoryBytes
        },
        Descriptor(name: "container_memory_working_set_bytes", help: "Current working set in bytes.", type: .gauge) {
            $0.memoryWorkingSetBytes
        },
        Descriptor(name: "container_processes", help: "Number of processes running inside the container.", type: .gauge)
        { $0.pids },
    ]

    static var descriptors: [Runtime_V1_MetricDescriptor] {
        all.map { d in
            .with {
                $0.name = d.name
                $0.help = d.help
                $0.labelKeys = labelKeys
            }
        }
    }

    static func container(_ sample: UsageSample) -> Runtime_V1_ContainerMetrics {
        let (record, usage, now) = (sample.record, sample.usage, sample.sampledAtNs)
        return .with { m in
            m.containerID = record.id
            m.metrics = all.map { d in
                .with {
                    $0.name = d.name
                    $0.timestamp = now
                    $0.metricType = d.type
                    $0.labelValues = [record.id, record.name, record.image]
                    $0.value = .with { $0.value = d.value(usage) }
                }
            }
        }
    }
}

extension RuntimeService {
    /// Metrics of every READY pod's running containers.
    func podMetrics() async throws(CocoonError) -> [Runtime_V1_PodSandboxMetrics] {
        let pods = await sandboxes.list(SandboxFilter()).filter { $0.state == .ready }
        let ready = Set(pods.map(\.id))
        let running = try await containers.list().filter { ready.contains($0.sandboxID) && $0.state == .running }
        // Every guest asked at once (a late one answers from its last sample).
        let samples = await containers.usage(of: running)
        return pods.map { pod in
            var metrics = Runtime_V1_PodSandboxMetrics()
            metrics.podSandboxID = pod.id
            metrics.containerMetrics = samples.filter { $0.record.sandboxID == pod.id }.map(
                MetricsTranslation.container)
            return metrics
        }
    }
}
