/// A server-side filter on an event's fields, beyond its channel pattern: `data.severity in (high, critical)`,
/// `data.current_status = breakdown and line = Line-2`, `data.oee_percentage < 60`.
///
/// Grammar (keywords are case-insensitive; whitespace between tokens is free):
///
///     filter  = clause *( "and" clause )
///     clause  = path ( compare value / ["not"] "in" "(" value *( "," value ) ")" / "exists" / "missing" )
///     path    = field *( "." key )                  ; field: a top-level event field (event_type, line, data, …)
///     compare = "=" / "!=" / "<" / "<=" / ">" / ">="
///     value   = number / 'text' / "text" / word / true / false / null   ; word: [A-Za-z0-9_.:@-]+, a string
///
/// Meaning: `=` and `!=` compare JSON values (a number with a number, a string with a string, …); a missing field
/// is equal to nothing, so `!=` and `not in` hold for it. `<`, `<=`, `>`, `>=` compare two numbers, or two strings
/// by their bytes (ISO timestamps order that way); anything else (missing, another type) is false. A class, so
/// that subscribers sharing a filter share one object and fan-out evaluates it once per event (`FilterVerdicts`).
public final class EventFilter: Sendable, Hashable, CustomStringConvertible {
    public enum Comparison: String, Sendable, Hashable {
        case equal = "=", notEqual = "!=", less = "<", lessOrEqual = "<=", greater = ">", greaterOrEqual = ">="
    }

    public enum Test: Sendable, Equatable {
        case compare(Comparison, JSONValue)
        case within([JSONValue])
        case notWithin([JSONValue])
        case exists
        case missing
    }

    public struct Clause: Sendable, Equatable {
        public var path: [String]
        public var test: Test
    }

    public static let maxBytes = 1024
    public static let maxClauses = 16
    public static let maxListValues = 64
    public static let maxPathDepth = 8
    /// The fields an event has at its top level; a path must start with one, so a typo (`severity` for
    /// `data.severity`) is refused instead of silently matching nothing.
    public static let topLevelFields: Set<String> = [
        "event_id", "event_type", "entity_type", "entity_id", "timestamp", "received_at", "line", "data", "metadata",
        "idempotency_key", "tenant", "late", "held",
    ]

    public let clauses: [Clause]
    /// The filter written out in one normal form: two spellings of one filter share it.
    public let canonical: String
    public var description: String { canonical }

    init(clauses: [Clause]) {
        self.clauses = clauses
        self.canonical = clauses.map(Self.describe).joined(separator: " and ")
    }

    public static func == (lhs: EventFilter, rhs: EventFilter) -> Bool { lhs.canonical == rhs.canonical }
    public func hash(into hasher: inout Hasher) { hasher.combine(canonical) }

    /// Whether `event` (the decoded event JSON) passes every clause.
    public func admits(_ event: JSONValue) -> Bool {
        clauses.allSatisfy { clause in
            var value: JSONValue? = event
            for key in clause.path { value = value?[key] }
            return Self.holds(clause.test, for: value)
        }
    }

    private static func holds(_ test: Test, for value: JSONValue?) -> Bool {
        switch test {
        case .exists: return value != nil && value != .null
        case .missing: return value == nil || value == .null
        case .within(let options): return value.map(options.contains) ?? false
        case .notWithin(let options): return !(value.map(options.contains) ?? false)
        case .compare(.equal, let expected): return value == expected
        case .compare(.notEqual, let expected): return value != expected
        case .compare(let comparison, let bound):
            switch (value, bound) {
            case (.number(let actual)?, .number(let limit)): return order(actual, limit, comparison)
            case (.string(let actual)?, .string(let limit)):
                let (lhs, rhs) = (Array(actual.utf8), Array(limit.utf8))
                return order(lhs == rhs ? 0 : (lhs.lexicographicallyPrecedes(rhs) ? -1 : 1), 0, comparison)
            default: return false
            }
        }
    }

    private static func order<T: Comparable>(_ lhs: T, _ rhs: T, _ comparison: Comparison) -> Bool {
        switch comparison {
        case .less: lhs < rhs
        case .lessOrEqual: lhs <= rhs
        case .greater: lhs > rhs
        case .greaterOrEqual: lhs >= rhs
        case .equal: lhs == rhs
        case .notEqual: lhs != rhs
        }
    }

    private static func describe(_ clause: Clause) -> String {
        let path = clause.path.joined(separator: ".")
        switch clause.test {
        case .compare(let comparison, let value): return "\(path) \(comparison.rawValue) \(literal(value))"
        case .within(let values): return "\(path) in (\(values.map(literal).joined(separator: ", ")))"
        case .notWithin(let values): return "\(path) not in (\(values.map(literal).joined(separator: ", ")))"
        case .exists: return "\(path) exists"
        case .missing: return "\(path) missing"
        }
    }

    private static func literal(_ value: JSONValue) -> String {
        var bytes: [UInt8] = []
        switch value {
        // Quoted as the parser reads quotes (no escapes): a string holds at most one kind of quote.
        case .string(let text): return text.contains("\"") ? "'\(text)'" : "\"\(text)\""
        case .number(let number): bytes = Array((number.rounded() == number && abs(number) < 1e15 ? String(Int64(number)) : String(number)).utf8)
        case .bool(let flag): bytes = Array(String(flag).utf8)
        default: bytes = Array("null".utf8)
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

extension EventFilter {
    /// Why a filter was refused: what is wrong and where (`at byte N`), for `invalid_filter`.
    public struct ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        public var reason: String
        public var description: String { reason }
    }

    /// Parses `text`; throws a `ParseError` naming the first problem and its byte offset.
    public static func parse(_ text: String) throws(ParseError) -> EventFilter {
        guard text.utf8.count <= maxBytes else { throw ParseError(reason: "filter is longer than \(maxBytes) bytes") }
        var parser = FilterParser(bytes: Array(text.utf8))
        return EventFilter(clauses: try parser.filter())
    }
}

/// A hand-written recursive-descent parser: the grammar is a dozen tokens, and none of the project's libraries
/// parses expressions; it is fuzzed with the other parsers (`HostileInputTests`).
private struct FilterParser {
    let bytes: [UInt8]
    var position = 0

    init(bytes: [UInt8]) { self.bytes = bytes }

    func fail(_ reason: String) -> EventFilter.ParseError { EventFilter.ParseError(reason: "at byte \(position): \(reason)") }

    mutating func filter() throws(EventFilter.ParseError) -> [EventFilter.Clause] {
        skipSpace()
        guard position < bytes.count else { throw fail("filter is empty; expected a clause like data.severity = high") }
        var clauses = [try clause()]
        while true {
            skipSpace()
            guard position < bytes.count else { return clauses }
            let word = peekWord()
            guard word?.lowercased() == "and" else {
                throw fail("expected 'and' or the end of the filter, got \(shown(word))")
            }
            position += 3
            guard clauses.count < EventFilter.maxClauses else { throw fail("more than \(EventFilter.maxClauses) clauses") }
            clauses.append(try clause())
        }
    }

    private mutating func clause() throws(EventFilter.ParseError) -> EventFilter.Clause {
        skipSpace()
        let path = try self.path()
        skipSpace()
        if let symbol = comparison() {
            skipSpace()
            return EventFilter.Clause(path: path, test: .compare(symbol, try value()))
        }
        let word = peekWord()
        switch word?.lowercased() {
        case "in":
            position += 2
            return EventFilter.Clause(path: path, test: .within(try list()))
        case "not":
            position += 3
            skipSpace()
            guard peekWord()?.lowercased() == "in" else { throw fail("expected 'in' after 'not', got \(shown(peekWord()))") }
            position += 2
            return EventFilter.Clause(path: path, test: .notWithin(try list()))
        case "exists":
            position += 6
            return EventFilter.Clause(path: path, test: .exists)
        case "missing":
            position += 7
            return EventFilter.Clause(path: path, test: .missing)
        default:
            throw fail("expected an operator after '\(path.joined(separator: "."))' (=, !=, <, <=, >, >=, in, not in, exists, missing), got \(shown(word))")
        }
    }

    private mutating func path() throws(EventFilter.ParseError) -> [String] {
        let start = position
        guard let word = readWord(), !word.isEmpty else { throw fail("expected a field name like data.severity, got \(shown(peekChar()))") }
        let keys = word.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard !keys.contains(where: \.isEmpty) else {
            position = start
            throw fail("field '\(word)' has an empty part")
        }
        guard keys.count <= EventFilter.maxPathDepth else {
            position = start
            throw fail("field '\(word)' is deeper than \(EventFilter.maxPathDepth) levels")
        }
        guard EventFilter.topLevelFields.contains(keys[0]) else {
            position = start
            throw fail("'\(keys[0])' is not an event field; fields are \(EventFilter.topLevelFields.sorted().joined(separator: ", ")) (data fields are data.<name>, e.g. data.severity)")
        }
        return keys
    }

    private mutating func comparison() -> EventFilter.Comparison? {
        for symbol in ["!=", "<=", ">=", "=", "<", ">"] where hasPrefix(symbol) {
            position += symbol.utf8.count
            return EventFilter.Comparison(rawValue: symbol)
        }
        return nil
    }

    private mutating func list() throws(EventFilter.ParseError) -> [JSONValue] {
        skipSpace()
        guard hasPrefix("(") else { throw fail("expected '(' to open the list of values, got \(shown(peekChar()))") }
        position += 1
        var values: [JSONValue] = []
        while true {
            skipSpace()
            values.append(try value())
            guard values.count <= EventFilter.maxListValues else { throw fail("more than \(EventFilter.maxListValues) values in one list") }
            skipSpace()
            if hasPrefix(",") {
                position += 1
                continue
            }
            guard hasPrefix(")") else { throw fail("expected ',' or ')' in the list of values, got \(shown(peekChar()))") }
            position += 1
            return values
        }
    }

    private mutating func value() throws(EventFilter.ParseError) -> JSONValue {
        guard position < bytes.count else { throw fail("expected a value, got the end of the filter") }
        let quote = bytes[position]
        if quote == UInt8(ascii: "'") || quote == UInt8(ascii: "\"") {
            let start = position
            position += 1
            guard let end = bytes[position...].firstIndex(of: quote) else {
                position = start
                throw fail("unterminated quoted value")
            }
            let text = String(decoding: bytes[position..<end], as: UTF8.self)
            position = end + 1
            return .string(text)
        }
        let start = position
        guard let word = readWord(), !word.isEmpty else { throw fail("expected a value, got \(shown(peekChar()))") }
        switch word {
        case "true": return .bool(true)
        case "false": return .bool(false)
        case "null": return .null
        default: break
        }
        // A number is what JSON calls one, as in the events it is compared with. Swift's `Double(String)` reads more
        // (hex, leading zeros, `5.`, `1e999` as infinity): `0x10` was 16 and `00012` was 12. Such a word is refused
        // rather than taken as text, which would silently never equal the number it was meant to be.
        if let first = word.utf8.first, first == UInt8(ascii: "-") || (first >= UInt8(ascii: "0") && first <= UInt8(ascii: "9")) {
            if case .number(let number)? = try? JSONValue.parse(word.utf8) { return .number(number) }
            if Double(word) != nil {
                position = start
                throw fail(
                    "\(shown(word)) is not a JSON number: write decimal digits without leading zeros (16, 0.5, -2e3) within "
                        + "±1.7e308 and ±(2^53 - 1) for integers, or quote it to compare as text")
            }
        }
        return .string(word)
    }

    private static func isWordByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "_"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: ":"), UInt8(ascii: "@"), UInt8(ascii: "+"):
            true
        default: false
        }
    }

    private mutating func readWord() -> String? {
        let start = position
        while position < bytes.count, Self.isWordByte(bytes[position]) { position += 1 }
        return position > start ? String(decoding: bytes[start..<position], as: UTF8.self) : nil
    }

    private func peekWord() -> String? {
        var copy = self
        return copy.readWord()
    }

    private func peekChar() -> String? {
        position < bytes.count ? String(decoding: [bytes[position]], as: UTF8.self) : nil
    }

    private func hasPrefix(_ text: String) -> Bool {
        let prefix = Array(text.utf8)
        return bytes.count - position >= prefix.count && Array(bytes[position..<position + prefix.count]) == prefix
    }

    private func shown(_ token: String?) -> String {
        token.map { "'\($0.prefix(40))'" } ?? "the end of the filter"
    }

    private mutating func skipSpace() {
        while position < bytes.count, bytes[position] == 0x20 || bytes[position] == 0x09 || bytes[position] == 0x0A || bytes[position] == 0x0D {
            position += 1
        }
    }
}
