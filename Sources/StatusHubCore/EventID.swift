/// A position in the hub's single, ordered history: `<milliseconds>-<sequence>`, the shape of a Redis stream id,
/// so the Redis engine can use the stream's own ids and resume can ask for "everything after X".
public struct EventID: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var milliseconds: UInt64
    public var sequence: UInt64

    public init(milliseconds: UInt64, sequence: UInt64) {
        self.milliseconds = milliseconds
        self.sequence = sequence
    }

    /// Reads the digits in place rather than splitting and calling `UInt64(_:)`: every stored event's id is read
    /// here more than once (the script's reply, the pub/sub message), and the split's array was 2 % of ingest
    /// (loadtest/RESULTS.md). Inlinable so callers in other modules get it specialized for their string type.
    @inlinable
    public init?(_ text: some StringProtocol) {
        let utf8 = text.utf8
        guard let dash = utf8.firstIndex(of: UInt8(ascii: "-")),
            let milliseconds = Self.decimal(utf8[..<dash]),
            let sequence = Self.decimal(utf8[utf8.index(after: dash)...])
        else { return nil }
        self.init(milliseconds: milliseconds, sequence: sequence)
    }

    /// One or more ASCII digits as a number, or nil (no digits, anything else, or past `UInt64.max`).
    @usableFromInline
    static func decimal(_ digits: some Collection<UInt8>) -> UInt64? {
        guard !digits.isEmpty else { return nil }
        var value: UInt64 = 0
        for byte in digits {
            let digit = byte &- UInt8(ascii: "0")
            guard digit < 10 else { return nil }
            let (shifted, overflowed) = value.multipliedReportingOverflow(by: 10)
            let (sum, carried) = shifted.addingReportingOverflow(UInt64(digit))
            guard !overflowed, !carried else { return nil }
            value = sum
        }
        return value
    }

    public var description: String { "\(milliseconds)-\(sequence)" }

    /// `0-0`, before every event: `since: "0-0"` asks for the whole history.
    public static let zero = EventID(milliseconds: 0, sequence: 0)

    public static func < (lhs: EventID, rhs: EventID) -> Bool {
        (lhs.milliseconds, lhs.sequence) < (rhs.milliseconds, rhs.sequence)
    }

    /// The next id after `previous` at wall-clock time `now`: never goes backwards, even if the clock does.
    public static func next(after previous: EventID?, nowMilliseconds now: UInt64) -> EventID {
        guard let previous else { return EventID(milliseconds: now, sequence: 0) }
        if now > previous.milliseconds { return EventID(milliseconds: now, sequence: 0) }
        return EventID(milliseconds: previous.milliseconds, sequence: previous.sequence + 1)
    }
}
