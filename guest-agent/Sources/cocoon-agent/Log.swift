import Glibc

let agentVersion = "0.1.0"

/// Writes one line to the console (the VM's serial log on the host).
func log(_ message: String) {
    let line = "cocoon-agent: \(message)\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
}

/// An errno-carrying failure of a system call.
struct SystemError: Error, CustomStringConvertible {
    let call: String
    let code: Int32
    init(_ call: String, _ code: Int32 = errno) {
        self.call = call
        self.code = code
    }
    var description: String { "\(call): \(String(cString: strerror(code)))" }
}
