import CRIAPI
import Errors
import GRPCCore

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
                struct Info: Encodable {
                    var sandboxID: String
                    var pid: Int32
                    var imageDiskSerial: String
                }
                response.info["info"] = try VerboseJSON.encode(
                    Info(sandboxID: record.sandboxID, pid: record.pid ?? 0, imageDiskSerial: record.imageDiskSerial))
                if let config = record.configJSON { response.info["config"] = config }
            }
            return response
        }
    }
}
