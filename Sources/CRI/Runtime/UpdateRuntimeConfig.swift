import CRIAPI
import Errors
import GRPCCore
import PodNetwork

extension RuntimeService {
    /// Stores the node's pod CIDR the kubelet sends (containerd keeps it for its CNI config template;
    /// Cocoon's pod addresses come from the CNI configuration in use). An empty CIDR is a no-op.
    public func updateRuntimeConfig(request: Runtime_V1_UpdateRuntimeConfigRequest, context: ServerContext) async throws
        -> Runtime_V1_UpdateRuntimeConfigResponse
    {
        try await mapErrors {
            let cidrs = request.runtimeConfig.networkConfig.podCidr
            if !cidrs.isEmpty {
                for cidr in cidrs.split(separator: ",") where !IPAddressText.isCIDR(String(cidr)) {
                    throw CocoonError.invalidArgument(
                        "runtime_config.network_config.pod_cidr \"\(cidrs)\" is not a CIDR (or a comma-separated list)")
                }
                try await sandboxes.setPodCIDR(cidrs)
            }
            return Runtime_V1_UpdateRuntimeConfigResponse()
        }
    }
}
