/// A streaming exec's request, as the CRI Exec call checked it.
public struct ExecRequest: Sendable, Equatable {
    public var containerID: String
    public var command: [String]
    public var stdin: Bool
    public var tty: Bool
    /// With `tty`: the client's terminal size (columns, rows) when it sent one before the process
    /// started; the terminal has it before the command runs.
    public var size: (width: UInt16, height: UInt16)?

    public init(containerID: String, command: [String], stdin: Bool, tty: Bool) {
        self.containerID = containerID
        self.command = command
        self.stdin = stdin
        self.tty = tty
    }

    public static func == (a: Self, b: Self) -> Bool {
        a.containerID == b.containerID && a.command == b.command && a.stdin == b.stdin && a.tty == b.tty
            && a.size?.width == b.size?.width && a.size?.height == b.size?.height
    }
}
