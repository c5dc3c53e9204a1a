/// The OCI chain id of a stack of layers: the identity of the root filesystem they make, as the
/// image config's `rootfs.diff_ids` name it (`chain(L0) = diff(L0)`,
/// `chain(L0..n) = sha256(chain(L0..n-1) + " " + diff(Ln))`). Unpacked trees and block images are
/// keyed by it, and a tree is only ever stored under it once every layer hashed to its diff id.
public enum ChainID {
    public static func of(_ diffIDs: [Digest]) -> Digest? {
        guard var chain = diffIDs.first else { return nil }
        for diff in diffIDs.dropFirst() { chain = Digest.of(Array((chain.description + " " + diff.description).utf8)) }
        return chain
    }
}
