import Glibc
import Models
import SystemFiles

/// Turns a `UserSpec` into numeric ids, reading the container's own /etc/passwd and /etc/group
/// (never the host's), as runc does.
public struct ResolvedUser: Sendable, Equatable {
    public var uid: UInt32
    public var gid: UInt32
    public var groups: [UInt32]
    public var home: String
}

public enum UserResolver {
    public static func resolve(_ user: UserSpec, rootfs: String) throws(ContainerCoreError) -> ResolvedUser {
        let passwd = try readEtc(rootfs, "/etc/passwd")
        let groupFile = try readEtc(rootfs, "/etc/group")
        var uid: UInt32 = user.uid ?? 0
        var gid: UInt32? = user.gid
        var home = "/"
        var name: String?
        let users = parse(passwd)
        if let username = user.username {
            if let number = UInt32(username) {
                uid = number
            } else {
                guard let entry = users.first(where: { $0[0] == username }), entry.count >= 4, let u = UInt32(entry[2]),
                    let g = UInt32(entry[3])
                else {
                    throw .notFound("user \"\(username)\" not found in the image's /etc/passwd")
                }
                uid = u
                gid = gid ?? g
            }
        }
        if let entry = users.first(where: { $0.count >= 4 && UInt32($0[2]) == uid }) {
            name = entry[0]
            if gid == nil { gid = UInt32(entry[3]) }
            if entry.count >= 6, !entry[5].isEmpty { home = entry[5] }
        }
        let groups = parse(groupFile)
        if let groupname = user.groupname {
            if let number = UInt32(groupname) {
                gid = number
            } else {
                guard let entry = groups.first(where: { $0[0] == groupname }), entry.count >= 3,
                    let g = UInt32(entry[2])
                else {
                    throw .notFound("group \"\(groupname)\" not found in the image's /etc/group")
                }
                gid = g
            }
        }
        let primary = gid ?? 0
        var supplementary: [UInt32] = []
        if let name {
            for entry in groups where entry.count >= 4 {
                if entry[3].split(separator: ",").contains(where: { $0 == name }), let g = UInt32(entry[2]) {
                    supplementary.append(g)
                }
            }
        }
        var all = [primary]
        for g in supplementary + user.supplementaryGroups where !all.contains(g) { all.append(g) }
        return ResolvedUser(uid: uid, gid: primary, groups: all, home: home)
    }

    private static func parse(_ text: String) -> [[String]] {
        text.split(separator: "\n").compactMap { line in
            if line.hasPrefix("#") { return nil }
            return line.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        }
    }

    /// Reads a small file of the image, safely resolved; a missing file reads as empty.
    private static func readEtc(_ rootfs: String, _ path: String) throws(ContainerCoreError) -> String {
        FileText.read(try SafePath.resolve(root: rootfs, path), flags: O_NOFOLLOW) ?? ""
    }
}
