import CRIAPI
import GRPCCore

extension RuntimeService {
    /// Cocoon manages host cgroups itself (cgroupfs), like containerd without the systemd driver.
    public func runtimeConfig(request: Runtime_V1_RuntimeConfigRequest, context: ServerContext) async throws
        -> Runtime_V1_RuntimeConfigResponse
    {
        var response = Runtime_V1_RuntimeConfigResponse()
        response.linux.cgroupDriver = .cgroupfs
        return response
    }
}
