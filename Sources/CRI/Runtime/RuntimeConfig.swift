import CRIAPI
import Foundation
import GRPCCore
import Hypervisor

extension RuntimeService {
    /// The cgroup driver the kubelet should use (it asks, with `KubeletCgroupDriverFromCRI`): the
    /// configured `[cgroups] driver`; under `auto`, systemd's where systemd runs the host, cgroupfs
    /// otherwise. Either way, Cocoon reads `cgroup_parent` in the form it is given.
    public func runtimeConfig(request: Runtime_V1_RuntimeConfigRequest, context: ServerContext) async throws
        -> Runtime_V1_RuntimeConfigResponse
    {
        var response = Runtime_V1_RuntimeConfigResponse()
        response.linux.cgroupDriver = Self.cgroupDriver(config.cgroupDriver)
        return response
    }

    static func cgroupDriver(_ configured: VMCgroup.Driver) -> Runtime_V1_CgroupDriver {
        // systemd's own test for "booted with systemd" (sd_booted).
        let systemdBooted = FileManager.default.fileExists(atPath: "/run/systemd/system")
        return configured.forKubelet(systemdBooted: systemdBooted) == .systemd ? .systemd : .cgroupfs
    }
}
