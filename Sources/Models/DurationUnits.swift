extension Duration {
    /// The whole duration in nanoseconds (saturating far beyond any timeout Cocoon uses).
    public var nanoseconds: Int64 {
        let (s, overflow) = components.seconds.multipliedReportingOverflow(by: 1_000_000_000)
        return overflow ? .max : s &+ components.attoseconds / 1_000_000_000
    }
    /// The duration in (fractional) milliseconds, for reports.
    public var milliseconds: Double { Double(components.seconds) * 1000 + Double(components.attoseconds) / 1e15 }
    /// The duration in (fractional) seconds, for reports.
    public var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
