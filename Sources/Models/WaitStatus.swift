/// Decodes a wait(2) status the way shells and CRI report it: the exit code, or 128 + the signal.
/// Used for the host's helper processes and the guest's container processes alike.
public enum WaitStatus {
    public static func exitCode(_ status: Int32) -> Int32 {
        (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    }
}
