import ArgumentParser
import Foundation

/// Who may use the CRI socket: root, and the configured group (`socket_group`, as containerd's
/// `[grpc] gid`): mode 0660 with that group, 0600 without one.
struct SocketAccess: Sendable {
    let gid: gid_t?

    init(group: String) throws {
        guard !group.isEmpty else {
            gid = nil
            return
        }
        if let numeric = UInt32(group) {
            gid = numeric
        } else if let entry = getgrnam(group) {
            gid = entry.pointee.gr_gid
        } else {
            throw ValidationError("socket_group \"\(group)\" is not a group of this host")
        }
    }

    func apply(to socket: String) throws {
        if let gid, chown(socket, 0, gid) != 0 {
            throw ValidationError("cannot give \(socket) to group \(gid): \(String(cString: strerror(errno)))")
        }
        guard chmod(socket, gid == nil ? 0o600 : 0o660) == 0 else {
            throw ValidationError("cannot set the mode of \(socket): \(String(cString: strerror(errno)))")
        }
    }
}
