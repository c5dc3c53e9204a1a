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

    static func container(_ record: ContainerRecord, _ usage: ContainerUsage) -> Runtime_V1_ContainerMetrics {
        let now = HostProcess.nowNs()
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
        var result: [Runtime_V1_PodSandboxMetrics] = []
        let all = try await containers.list()
        for pod in await sandboxes.list(SandboxFilter()) where pod.state == .ready {
            var metrics = Runtime_V1_PodSandboxMetrics()
            metrics.podSandboxID = pod.id
            for record in all where record.sandboxID == pod.id && record.state == .running {
                guard let (r, usage) = try? await containers.stats(record.id) else { continue }  // removed meanwhile
                metrics.containerMetrics.append(MetricsTranslation.container(r, usage))
            }
            result.append(metrics)
        }
        return result
    }
}
