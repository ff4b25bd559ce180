extension Duration {
    /// The duration as fractional seconds, for logs and `Retry-After`.
    public var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
