/// The order of an entity's states by when they happened at the source (seed 003 §6.2), not by when they reached
/// the hub: an edge device back-filling after an outage sends old events after new ones, and those must not
/// overwrite the newer state.
///
/// A rank is `<sequence>|<instant>`: the publisher's `sequence` zero-padded to 16 digits (empty when not sent),
/// and the `timestamp` as a UTC instant, `<13-digit seconds since 0000-03-01>.<9-digit fraction>`. Both parts are
/// fixed-width digits, so ranks compare as plain byte strings — in Swift under the memory engine's lock and with
/// Lua's `<` inside the Redis append script, with one meaning.
public enum SourceOrder {
    /// The rank of an event whose timestamp `Timestamps.read` gave `moment`.
    public static func rank(_ moment: Timestamps.Moment, sequence: Int?) -> String {
        // Written as bytes into one buffer: composing it from padded Strings cost 5 % of validation.
        var bytes: [UInt8] = []
        bytes.reserveCapacity(40)
        if let sequence { appendDigits(UInt64(sequence), width: 16, to: &bytes) }
        bytes.append(UInt8(ascii: "|"))
        appendInstant(moment, to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The rank of an event, or nil if `timestamp` is not one `Timestamps.read` accepts.
    public static func rank(timestamp: String, sequence: Int?) -> String? {
        guard case .success(let moment) = Timestamps.read(timestamp) else { return nil }
        return rank(moment, sequence: sequence)
    }

    /// Whether a state of rank `candidate` is older than the cached one of rank `current`: by sequence when both
    /// carry one and they differ, else by source instant. Equal ranks are not older (the later ingest wins).
    ///
    /// A lower sequence stamped after a state the hub has held longer than `resetSeconds` (`heldSeconds`, by the
    /// hub's clock; `server.sequence_reset_seconds`, 0: never) is a publisher that restarted its count — a gateway's
    /// reboot — and is not older. The hub's clock, not the stamps, tells the two apart from a device whose clock
    /// jumped back: there the older-sequence event arrives right behind the newer one it was overtaken by.
    public static func isOlder(_ candidate: String, than current: String, heldSeconds: Double = 0, resetSeconds: Int = 0) -> Bool {
        let new = split(candidate)
        let old = split(current)
        if !new.sequence.isEmpty, !old.sequence.isEmpty, new.sequence != old.sequence {
            let lower = new.sequence.lexicographicallyPrecedes(old.sequence)
            let restarted = lower && resetSeconds > 0 && heldSeconds > Double(resetSeconds)
                && old.instant.lexicographicallyPrecedes(new.instant)
            return lower && !restarted
        }
        return new.instant.lexicographicallyPrecedes(old.instant)
    }

    /// The same comparison in Lua, for the append script (`older(candidate, current, now, resetSeconds)`): `current`
    /// is the held rank, which carries when it was stored (`|<ms>`, Redis's clock, `now` the same) when it has a
    /// sequence.
    public static let luaFunction = """
        local function older(candidate, current, now, resetSeconds)
          local ns, ni = string.match(candidate, '^(%d*)|([^|]*)$')
          local cs, ci, stored = string.match(current, '^(%d*)|([^|]*)|?(%d*)$')
          if not ci then return false end
          if ns ~= '' and cs ~= '' and ns ~= cs then
            if ns > cs then return false end
            local restarted = resetSeconds > 0 and stored ~= '' and now - tonumber(stored) > resetSeconds * 1000 and ci < ni
            return not restarted
          end
          return ni < ci
        end
        """

    private static func split(_ rank: String) -> (sequence: Substring, instant: Substring) {
        guard let bar = rank.firstIndex(of: "|") else { return ("", rank[...]) }
        return (rank[..<bar], rank[rank.index(after: bar)...])
    }

    /// The moment as UTC seconds since 0000-03-01 and nine fraction digits (`Timestamps.read` takes no more:
    /// events a nanosecond apart are ordered by ingest).
    private static func appendInstant(_ moment: Timestamps.Moment, to bytes: inout [UInt8]) {
        // A year-0001 moment with a positive zone offset is before 0000-03-01 + 1 year; a day's margin keeps the
        // seconds non-negative for every accepted timestamp.
        let seconds = moment.secondsSinceCivilOrigin + 86_400
        appendDigits(UInt64(seconds), width: 13, to: &bytes)
        bytes.append(UInt8(ascii: "."))
        bytes.append(contentsOf: moment.fraction)
        bytes.append(contentsOf: repeatElement(UInt8(ascii: "0"), count: 9 - moment.fraction.count))
    }

    /// `value` in decimal, zero-padded on the left to `width` digits (wider values are written whole).
    private static func appendDigits(_ value: UInt64, width: Int, to bytes: inout [UInt8]) {
        var count = 1
        var rest = value / 10
        while rest > 0 {
            count += 1
            rest /= 10
        }
        // Zeros first, then the digits written over them from the right: no buffer of their own.
        bytes.append(contentsOf: repeatElement(UInt8(ascii: "0"), count: max(width, count)))
        var index = bytes.count - 1
        rest = value
        repeat {
            bytes[index] = UInt8(ascii: "0") + UInt8(rest % 10)
            rest /= 10
            index -= 1
        } while rest > 0
    }
}
