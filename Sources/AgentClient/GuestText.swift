/// Text that came from a guest (ids, error messages), made safe to keep and to log: cut to a
/// length, control characters and non-ASCII escaped, so a guest can neither forge log lines nor
/// grow what the daemon keeps.
public enum GuestText {
    /// The longest id (container, exec) a guest may name; longer ones match nothing and are dropped.
    public static let maxID = 128
    /// The longest message (an error's text) kept from a guest.
    public static let maxMessage = 4096

    /// `text` cut to `max` bytes' worth of characters, printable ASCII kept, the rest escaped.
    public static func printable(_ text: String, max: Int = maxMessage) -> String {
        var out = ""
        var bytes = 0
        for scalar in text.unicodeScalars {
            let piece = (0x20..<0x7f).contains(scalar.value) ? String(scalar) : scalar.escaped(asASCII: true)
            bytes += piece.utf8.count
            if bytes > max { return out + "…" }
            out += piece
        }
        return out
    }
}
