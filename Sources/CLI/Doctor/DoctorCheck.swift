import Foundation

/// One finding of `cocoonctl doctor`: what was checked, how it stands, what it found, and one line
/// of advice for anything not ok.
public struct DoctorCheck: Sendable, Equatable {
    public enum Level: String, Sendable, Comparable {
        case ok, warn, fail

        public static func < (a: Level, b: Level) -> Bool {
            let order: [Level] = [.ok, .warn, .fail]
            return (order.firstIndex(of: a) ?? 0) < (order.firstIndex(of: b) ?? 0)
        }
    }

    public var name: String
    public var level: Level
    public var finding: String
    public var advice: String?

    public init(_ name: String, _ level: Level, _ finding: String, advice: String? = nil) {
        self.name = name
        self.level = level
        self.finding = finding
        self.advice = advice
    }

    public static func ok(_ name: String, _ finding: String) -> DoctorCheck { .init(name, .ok, finding) }
    public static func warn(_ name: String, _ finding: String, _ advice: String) -> DoctorCheck {
        .init(name, .warn, finding, advice: advice)
    }
    public static func fail(_ name: String, _ finding: String, _ advice: String) -> DoctorCheck {
        .init(name, .fail, finding, advice: advice)
    }
}

/// The doctor's report: one line per check (`ok`, `warn` or `fail`, its name, what was found) and
/// the advice below each check that is not ok; the exit status is 1 when anything failed.
public enum DoctorReport {
    public static func render(_ checks: [DoctorCheck]) -> String {
        let width = (checks.map(\.name.count).max() ?? 0) + 2
        return checks.map { check in
            var line =
                check.level.rawValue.padding(toLength: 6, withPad: " ", startingAt: 0)
                + check.name.padding(toLength: width, withPad: " ", startingAt: 0) + check.finding
            if let advice = check.advice, check.level != .ok {
                line += "\n" + String(repeating: " ", count: 6) + "→ " + advice
            }
            return line
        }.joined(separator: "\n")
    }

    public static func exitCode(_ checks: [DoctorCheck]) -> Int32 { checks.contains { $0.level == .fail } ? 1 : 0 }
}
