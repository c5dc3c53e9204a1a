import CRIAPI
import Errors
import GRPCCore
import Spawn

extension RuntimeService {
    public func containerStatus(request: Runtime_V1_ContainerStatusRequest, context: ServerContext) async throws
        -> Runtime_V1_ContainerStatusResponse
    {
        try await mapErrors {
            guard !request.containerID.isEmpty else { throw CocoonError.invalidArgument("container_id is required") }
            let record = try await containers.status(request.containerID)
            var response = Runtime_V1_ContainerStatusResponse()
            response.status = ContainerTranslation.status(record)
            if request.verbose {
                /// The stats' last reading from the guest: how old it is, and whether the guest was late
                /// at the last try (the stats then repeat that reading).
                struct UsageInfo: Encodable {
                    var readAgeMs: Int64
                    var guestLate: Bool
                }
                struct Info: Encodable {
                    var sandboxID: String
                    var pid: Int32
                    var imageDiskSerial: String
                    var usage: UsageInfo?
                }
                let now = HostProcess.nowNs()
                let usage = await containers.lastUsageReading(record.id).map {
                    UsageInfo(readAgeMs: (now - $0.atNs) / 1_000_000, guestLate: $0.lateSinceNs != nil)
                }
                response.info["info"] = try VerboseJSON.encode(
                    Info(
                        sandboxID: record.sandboxID, pid: record.pid ?? 0, imageDiskSerial: record.imageDiskSerial,
                        usage: usage))
                if let config = record.configJSON { response.info["config"] = config }
            }
            return response
        }
    }
}
