import Config
import Errors

/// Decides a pod VM's size from its handler and what the pod asks for (its memory limit, and the
/// `io.cocoon.vm.*` annotations the handler enables), within the handler's maxima: a pod author
/// cannot size a VM beyond what the node's operator allows.
public enum VMSizing {
    public struct Size: Sendable, Equatable {
        public var vcpus: Int
        public var memoryMiB: Int
        /// Annotations the pod gave that were not honoured (logged as warnings).
        public var ignored: [String]
    }

    public static let annotationPrefix = "io.cocoon.vm."

    public static func resolve(_ request: RunRequest, handler: RuntimeHandler, handlerName: String) throws(CocoonError)
        -> Size
    {
        let enabled = Set(handler.enableAnnotations)
        let ignored = request.annotations.keys.filter {
            $0.hasPrefix(annotationPrefix) && !enabled.contains(String($0.dropFirst(annotationPrefix.count)))
        }.sorted()
        var vcpus = handler.vcpus
        if let asked = request.vcpus {
            if enabled.contains("vcpus") {
                guard asked <= handler.maxVcpus else {
                    throw .invalidArgument(
                        "annotation \(annotationPrefix)vcpus=\(asked) exceeds handler \(handlerName)'s max_vcpus "
                            + "\(handler.maxVcpus)")
                }
                vcpus = asked
            }
        }
        var memory = handler.memoryMiB + request.extraMemoryMiB
        var from = "config.linux.resources.memory_limit_in_bytes (added to the handler's \(handler.memoryMiB) MiB)"
        if let asked = request.memoryMiBOverride, enabled.contains("memory_mib") {
            memory = asked
            from = "annotation \(annotationPrefix)memory_mib=\(asked)"
        }
        guard memory <= handler.maxMemoryMiB else {
            throw .invalidArgument(
                "\(from): a VM of \(memory) MiB exceeds handler \(handlerName)'s max_memory_mib \(handler.maxMemoryMiB)"
            )
        }
        return Size(vcpus: vcpus, memoryMiB: memory, ignored: ignored)
    }
}
