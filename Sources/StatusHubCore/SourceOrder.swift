/// The order of an entity's states by when they happened at the source (seed 003 §6.2), not by when they reached
/// the hub: an edge device back-filling after an outage sends old events after new ones, and those must not
/// overwrite the newer state.
///
/// A rank is `<sequence>|<instant>`: the publisher's `sequence` zero-padded to 16 digits (empty when not sent),
/// and the `timestamp` as a UTC instant, `<13-digit seconds since 0000-03-01>.<9-digit fraction>`. Both parts are
/// fixed-width digits, so ranks compare as plain byte strings — in Swift under the memory engine's lock and with
/// Lua's `<` inside the Redis append script, with one meaning.
public enum SourceOrder {
    /// The rank of an event, or nil if `timestamp` is not the shape `Timestamps.problem` accepts.
    public static func rank(timestamp: String, sequence: Int?) -> String? {
        guard let instant = instant(timestamp) else { return nil }
        let sequencePart = sequence.map { pad(UInt64($0), to: 16) } ?? ""
        return sequencePart + "|" + instant
    }

    /// Whether a state of rank `candidate` is older than the cached one of rank `current`: by sequence when both
    /// carry one and they differ, else by source instant. Equal ranks are not older (the later ingest wins).
    public static func isOlder(_ candidate: String, than current: String) -> Bool {
        let new = split(candidate)
        let old = split(current)
        if !new.sequence.isEmpty, !old.sequence.isEmpty, new.sequence != old.sequence {
            return new.sequence.lexicographicallyPrecedes(old.sequence)
        }
        return new.instant.lexicographicallyPrecedes(old.instant)
    }

    /// The same comparison in Lua, for the append script (`older(candidate, current)`).
    public static let luaFunction = """
        local function older(candidate, current)
          local ns, ni = string.match(candidate, '^(%d*)|(.*)$')
          local cs, ci = string.match(current, '^(%d*)|(.*)$')
          if not ci then return false end
          if ns ~= '' and cs ~= '' and ns ~= cs then return ns < cs end
          return ni < ci
        end
        """

    private static func split(_ rank: String) -> (sequence: Substring, instant: Substring) {
        guard let bar = rank.firstIndex(of: "|") else { return ("", rank[...]) }
        return (rank[..<bar], rank[rank.index(after: bar)...])
    }

    /// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` as UTC seconds since 0000-03-01 and nine fraction digits (more
    /// are cut: events a nanosecond apart are ordered by ingest).
    private static func instant(_ text: String) -> String? {
        let bytes = Array(text.utf8)
        func number(_ start: Int, _ digits: Int) -> Int? {
            guard start + digits <= bytes.count else { return nil }
            var value = 0
            for byte in bytes[start..<start + digits] {
                guard (48...57).contains(byte) else { return nil }
                value = value * 10 + Int(byte - 48)
            }
            return value
        }
        guard bytes.count >= 20, let year = number(0, 4), let month = number(5, 2), let day = number(8, 2),
            let hour = number(11, 2), let minute = number(14, 2), let second = number(17, 2)
        else { return nil }
        var index = 19
        var fraction: [UInt8] = []
        if bytes[index] == UInt8(ascii: ".") {
            index += 1
            while index < bytes.count, (48...57).contains(bytes[index]) {
                if fraction.count < 9 { fraction.append(bytes[index]) }
                index += 1
            }
        }
        while fraction.count < 9 { fraction.append(48) }
        var offset = 0
        if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-"),
            let offsetHours = number(index + 1, 2), let offsetMinutes = number(index + 4, 2)
        {
            offset = (offsetHours * 3600 + offsetMinutes * 60) * (bytes[index] == UInt8(ascii: "-") ? -1 : 1)
        }
        // Days since 0000-03-01 (the civil-from-days algorithm run backwards; March first puts leap days last).
        let shiftedYear = month <= 2 ? year - 1 : year
        let era = shiftedYear / 400
        let yearOfEra = shiftedYear - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        let days = era * 146_097 + dayOfEra
        // A year-0001 moment with a positive zone offset is before 0000-03-01 + 1 year; a day's margin keeps the
        // seconds non-negative for every accepted timestamp.
        let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset + 86_400
        return pad(UInt64(seconds), to: 13) + "." + String(decoding: fraction, as: UTF8.self)
    }

    private static func pad(_ value: UInt64, to width: Int) -> String {
        let digits = String(value)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }
}
