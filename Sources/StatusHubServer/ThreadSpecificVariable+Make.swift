import NIOPosix

extension ThreadSpecificVariable {
    /// This thread's value, made on its first use here (the per-thread zlib state of `MessageDeflater` and
    /// `MessageInflater`).
    func currentValue(orMake make: () -> Value) -> Value {
        if let value = currentValue { return value }
        let value = make()
        currentValue = value
        return value
    }
}
