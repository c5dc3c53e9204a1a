import CRIAPI
import Containers
import Errors
import Volumes

/// A CreateContainer's `mounts`, checked: what a VM pod can serve through its shared directory.
enum ContainerVolumes {
    static func mounts(_ mounts: [Runtime_V1_Mount]) throws(CocoonError) -> [ContainerRecord.MountInfo] {
        var result: [ContainerRecord.MountInfo] = []
        for (i, m) in mounts.enumerated() {
            let field = "mounts[\(i)]"
            if m.hasImage, !m.image.image.isEmpty {
                throw .unimplemented("\(field).image: image volumes are not supported by Cocoon")
            }
            guard m.uidMappings.isEmpty, m.gidMappings.isEmpty else {
                throw .unimplemented("\(field).uidMappings/gidMappings: idmapped volumes are not supported by Cocoon")
            }
            guard !m.hostPath.isEmpty else { throw .invalidArgument("\(field).host_path must not be empty") }
            guard m.containerPath.hasPrefix("/") else {
                throw .invalidArgument("\(field).container_path \"\(m.containerPath)\" must be absolute")
            }
            let propagation: VolumeRequest.Propagation
            switch m.propagation {
            case .propagationPrivate: propagation = .private
            case .propagationHostToContainer: propagation = .hostToContainer
            case .propagationBidirectional:
                throw .invalidArgument(
                    "\(field).propagation PROPAGATION_BIDIRECTIONAL is not supported: a VM pod's guest may not "
                        + "make mounts on the host, and native pods do not propagate mounts back to the host")
            case .UNRECOGNIZED(let value):
                throw .invalidArgument("\(field).propagation \(value) is not a known propagation")
            }
            if m.recursiveReadOnly {
                guard m.readonly else {
                    throw .invalidArgument("\(field).recursive_read_only needs readonly")
                }
                guard propagation == .private else {
                    throw .invalidArgument("\(field).recursive_read_only needs PROPAGATION_PRIVATE")
                }
            }
            result.append(
                .init(
                    hostPath: m.hostPath, containerPath: m.containerPath, readOnly: m.readonly,
                    recursiveReadOnly: m.recursiveReadOnly, propagation: propagation))
        }
        return result
    }
}
