/// A position in the hub's single, ordered history: `<milliseconds>-<sequence>`, the shape of a Redis stream id,
/// so the Redis engine can use the stream's own ids and resume can ask for "everything after X".
public struct EventID: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var milliseconds: UInt64
    public var sequence: UInt64

    public init(milliseconds: UInt64, sequence: UInt64) {
        self.milliseconds = milliseconds
        self.sequence = sequence
    }

    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, let ms = UInt64(parts[0]), let seq = UInt64(parts[1]) else { return nil }
        self.init(milliseconds: ms, sequence: seq)
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
