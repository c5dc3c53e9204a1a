import Foundation

/// The host's TSC rate in kHz, which a TCG guest must be told (`tsc_early_khz`): under emulation the
/// guest's TSC ticks at the host's rate, so a wrong figure makes guest time run fast or slow
/// (2 GHz told on a 2.445 GHz host made guest clocks run 22% fast, and `sleep` short).
public enum HostTSC {
    public static let fallbackKHz = 2_000_000

    /// Read once from /proc/cpuinfo ("cpu MHz"); the fallback when absent or implausible.
    public static let khz: Int = {
        // try?: no cpuinfo: the fallback rate
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return fallbackKHz }
        return parse(cpuinfo: text) ?? fallbackKHz
    }()

    static func parse(cpuinfo: String) -> Int? {
        for line in cpuinfo.split(separator: "\n") where line.hasPrefix("cpu MHz") {
            guard let colon = line.firstIndex(of: ":"),
                let mhz = Double(line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
            else { return nil }
            let khz = Int((mhz * 1000).rounded())
            return (500_000...10_000_000).contains(khz) ? khz : nil
        }
        return nil
    }
}
