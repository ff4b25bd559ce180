/// Why a text is not JSON, and where: told to the client after "is not valid JSON".
public struct JSONParseError: Error, Equatable, Sendable, CustomStringConvertible {
    public var offset: Int
    public var problem: String
    /// The text may be JSON, but it is over one of the hub's limits (`JSONValue.maxDepth`, exact integers): say so
    /// rather than "not valid JSON".
    public var isLimit = false

    public var description: String { "\(problem) at byte \(offset)" }
}

extension JSONValue {
    /// The deepest nesting accepted, as `JSONDecoder`'s.
    public static let maxDepth = 512

    /// The largest integer a number keeps exactly (2^53 − 1, JavaScript's `Number.MAX_SAFE_INTEGER`): values are
    /// held as `Double`, and a dashboard reads them as JavaScript numbers.
    public static let maxExactInteger: Double = 9_007_199_254_740_991

    /// The parse errors for what `JSONDecoder` accepts and `parse` does not.
    public static let stricterThanJSONDecoder: Set<String> = [
        JSONTextParser.duplicateKey, JSONTextParser.trailingComma, JSONTextParser.notUTF8, JSONTextParser.inexactInteger,
    ]

    /// Parses one JSON text (RFC 8259; a scalar is a text too) into a value, refusing what `JSONDecoder` refuses —
    /// a number beyond `Double`, nesting deeper than `maxDepth`, invalid UTF-8, a raw control character or a lone
    /// surrogate in a string, anything after the value — and what it lets through: an integer written without
    /// fraction or exponent beyond ±`maxExactInteger`, which a `Double` would silently round (I-JSON, RFC 7493); a key twice in one
    /// object (it keeps one of the values; the hub never guesses which was meant), a comma before a closing
    /// bracket, and text in UTF-16 or UTF-32 (none of them JSON as RFC 8259 has it).
    ///
    /// Written here rather than taken from Foundation: ingest spent a quarter of its CPU in `JSONDecoder` building
    /// this enum through Codable (which can only try a type and catch the miss), and `JSONSerialization`, faster,
    /// resolves a duplicate key to one of its values, which the hub refuses to do. `JSONValueParsingTests` checks it
    /// against `JSONDecoder` on generated and mutated inputs.
    public static func parse(_ bytes: some Collection<UInt8>) throws(JSONParseError) -> JSONValue {
        let result: Result<JSONValue, JSONParseError>? = bytes.withContiguousStorageIfAvailable { buffer in
            Result { () throws(JSONParseError) in try parse(buffer: buffer) }
        }
        if let result { return try result.get() }
        let copy = Array(bytes)
        return try copy.withUnsafeBufferPointer { buffer throws(JSONParseError) in try parse(buffer: buffer) }
    }

    private static func parse(buffer: UnsafeBufferPointer<UInt8>) throws(JSONParseError) -> JSONValue {
        // RFC 8259 asks for UTF-8; `JSONDecoder` also guesses UTF-16 and UTF-32 from zero bytes at the start.
        if buffer.count >= 2, buffer[0] == 0 || buffer[1] == 0 { throw JSONParseError(offset: 0, problem: JSONTextParser.notUTF8) }
        var parser = JSONTextParser(bytes: buffer)
        // A UTF-8 byte order mark is skipped, as `JSONDecoder` does.
        if buffer.count >= 3, buffer[0] == 0xEF, buffer[1] == 0xBB, buffer[2] == 0xBF { parser.position = 3 }
        parser.skipWhitespace()
        let value = try parser.value(depth: 0)
        parser.skipWhitespace()
        guard parser.position == buffer.count else { throw parser.failure("unexpected text after the value") }
        return value
    }
}

struct JSONTextParser {
    static let duplicateKey = "a key appears twice in one object"
    static let trailingComma = "a comma before the closing bracket"
    static let notUTF8 = "not UTF-8 (a zero byte where the text starts)"
    static let inexactInteger = "an integer beyond ±(2^53 − 1) cannot be kept exact"

    let bytes: UnsafeBufferPointer<UInt8>
    var position = 0
    /// The members of the objects still open, innermost last. An object's members gather here and become its
    /// dictionary, sized once, when it closes: a dictionary grown member by member was rehashed at 1, 2, 4 and 8
    /// members and hashed each key twice (a lookup for duplicates, then the insert) — a fifth of batched ingest's CPU.
    private var openMembers: [(key: String, value: JSONValue)] = []

    init(bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

    func failure(_ problem: String) -> JSONParseError { JSONParseError(offset: position, problem: problem) }

    mutating func skipWhitespace() {
        while position < bytes.count {
            switch bytes[position] {
            case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\n"), UInt8(ascii: "\r"): position += 1
            default: return
            }
        }
    }

    mutating func value(depth: Int) throws(JSONParseError) -> JSONValue {
        guard position < bytes.count else { throw failure("unexpected end of text") }
        switch bytes[position] {
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "{"): return try object(depth: depth + 1)
        case UInt8(ascii: "["): return try array(depth: depth + 1)
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try number())
        default: throw failure("unexpected character")
        }
    }

    private mutating func literal(_ word: StaticString) throws(JSONParseError) {
        let count = word.utf8CodeUnitCount
        guard bytes.count - position >= count else { throw failure("unexpected end of text") }
        for offset in 0..<count where bytes[position + offset] != word.utf8Start[offset] {
            throw failure("unexpected character")
        }
        position += count
    }

    /// Keys an object's new key is compared with one by one; an object with more keeps a set of them instead.
    private static let keysComparedOneByOne = 16

    private mutating func object(depth: Int) throws(JSONParseError) -> JSONValue {
        guard try opens(depth: depth, closing: UInt8(ascii: "}")) else { return .object([:]) }
        let first = openMembers.count
        defer { openMembers.removeSubrange(first...) }
        var keys: Set<String>?
        repeat {
            guard position < bytes.count, bytes[position] == UInt8(ascii: "\"") else { throw failure("expected a key") }
            let keyStart = position
            let key = try string()
            // Refused at the second key, before its value is read: a text with a second fault in that value is still told
            // of the duplicate first (`JSONDecoder`, which keeps one value, never checks the other).
            let twice: Bool
            if openMembers.count - first < Self.keysComparedOneByOne {
                twice = openMembers[first...].contains { $0.key == key }
            } else {
                if keys == nil { keys = Set(openMembers[first...].lazy.map(\.key)) }
                twice = !keys!.insert(key).inserted
            }
            guard !twice else { throw JSONParseError(offset: keyStart, problem: "\(Self.duplicateKey): '\(key)'") }
            skipWhitespace()
            guard position < bytes.count, bytes[position] == UInt8(ascii: ":") else { throw failure("expected ':'") }
            position += 1
            skipWhitespace()
            let value = try value(depth: depth)
            openMembers.append((key, value))
        } while try continues(closing: UInt8(ascii: "}"))
        var members = [String: JSONValue](minimumCapacity: openMembers.count - first)
        for member in openMembers[first...] { members[member.key] = member.value }
        return .object(members)
    }

    private mutating func array(depth: Int) throws(JSONParseError) -> JSONValue {
        var elements: [JSONValue] = []
        guard try opens(depth: depth, closing: UInt8(ascii: "]")) else { return .array(elements) }
        repeat {
            elements.append(try value(depth: depth))
        } while try continues(closing: UInt8(ascii: "]"))
        return .array(elements)
    }

    /// At an opening bracket: false when the container is empty (its closing bracket consumed too).
    private mutating func opens(depth: Int, closing: UInt8) throws(JSONParseError) -> Bool {
        guard depth <= JSONValue.maxDepth else {
            var error = failure("nested deeper than the limit of \(JSONValue.maxDepth) levels")
            error.isLimit = true
            throw error
        }
        position += 1
        skipWhitespace()
        guard position < bytes.count, bytes[position] == closing else { return true }
        position += 1
        return false
    }

    /// After a member or element: true after a comma (another one follows), false at the closing bracket.
    private mutating func continues(closing: UInt8) throws(JSONParseError) -> Bool {
        skipWhitespace()
        guard position < bytes.count else { throw failure("unexpected end of text") }
        switch bytes[position] {
        case UInt8(ascii: ","):
            position += 1
            skipWhitespace()
            if position < bytes.count, bytes[position] == closing { throw failure(Self.trailingComma) }
            return true
        case closing:
            position += 1
            return false
        default:
            throw failure("expected ',' or '\(Character(Unicode.Scalar(closing)))'")
        }
    }

    /// RFC 8259's number grammar, converted by the standard library; one beyond `Double` is refused.
    private mutating func number() throws(JSONParseError) -> Double {
        let start = position
        if bytes[position] == UInt8(ascii: "-") { position += 1 }
        guard position < bytes.count, isDigit(bytes[position]) else { throw failure("expected a digit") }
        if bytes[position] == UInt8(ascii: "0") {
            position += 1
            if position < bytes.count, isDigit(bytes[position]) { throw failure("a number cannot start with 0") }
        } else {
            skipDigits()
        }
        let integerEnd = position
        if position < bytes.count, bytes[position] == UInt8(ascii: ".") {
            position += 1
            guard position < bytes.count, isDigit(bytes[position]) else { throw failure("expected a digit after '.'") }
            skipDigits()
        }
        if position < bytes.count, bytes[position] == UInt8(ascii: "e") || bytes[position] == UInt8(ascii: "E") {
            position += 1
            if position < bytes.count, bytes[position] == UInt8(ascii: "+") || bytes[position] == UInt8(ascii: "-") { position += 1 }
            guard position < bytes.count, isDigit(bytes[position]) else { throw failure("expected a digit in the exponent") }
            skipDigits()
        }
        let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<position]), as: UTF8.self)
        // Too large is infinite, too small is 0 though a digit was not: both out of range, as for `JSONDecoder`.
        guard let value = Double(text), value.isFinite,
            value != 0 || !text.prefix(while: { $0 != "e" && $0 != "E" }).contains(where: { ("1"..."9").contains($0) })
        else {
            throw JSONParseError(offset: start, problem: "number out of range")
        }
        if integerEnd == position, abs(value) > JSONValue.maxExactInteger {
            throw JSONParseError(offset: start, problem: "\(JSONTextParser.inexactInteger) (\(text.prefix(40)))", isLimit: true)
        }
        return value
    }

    private func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

    private mutating func skipDigits() {
        while position < bytes.count, isDigit(bytes[position]) { position += 1 }
    }

    /// A string, its escapes resolved; the bytes between escapes are checked as UTF-8 on the way.
    private mutating func string() throws(JSONParseError) -> String {
        position += 1  // opening quote
        let start = position
        // Any byte's high bit: none set means ASCII, valid UTF-8 as it is.
        var highBits: UInt8 = 0
        // The common case: no escapes, so the text is the bytes as they are.
        while position < bytes.count {
            let byte = bytes[position]
            if byte == UInt8(ascii: "\"") {
                // ASCII needs no validating: `String(validating:as:)` is generic, and unspecialized here it looked its
                // type metadata up at run time for every string (a few percent of ingest's CPU).
                let text = highBits < 0x80
                    ? String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<position]), as: UTF8.self)
                    : try validated(start..<position)
                position += 1
                return text
            }
            if byte == UInt8(ascii: "\\") { break }
            guard byte >= 0x20 else { throw failure("unescaped control character in a string") }
            highBits |= byte
            position += 1
        }
        var text = try validated(start..<position)
        while position < bytes.count {
            let byte = bytes[position]
            switch byte {
            case UInt8(ascii: "\""):
                position += 1
                return text
            case UInt8(ascii: "\\"):
                position += 1
                guard position < bytes.count else { throw failure("unexpected end of text") }
                let escape = bytes[position]
                position += 1
                switch escape {
                case UInt8(ascii: "\""): text.append("\"")
                case UInt8(ascii: "\\"): text.append("\\")
                case UInt8(ascii: "/"): text.append("/")
                case UInt8(ascii: "b"): text.append("\u{08}")
                case UInt8(ascii: "f"): text.append("\u{0C}")
                case UInt8(ascii: "n"): text.append("\n")
                case UInt8(ascii: "r"): text.append("\r")
                case UInt8(ascii: "t"): text.append("\t")
                case UInt8(ascii: "u"): text.unicodeScalars.append(try unicodeEscape())
                default: throw failure("invalid escape")
                }
            default:
                guard byte >= 0x20 else { throw failure("unescaped control character in a string") }
                let runStart = position
                while position < bytes.count, bytes[position] != UInt8(ascii: "\""), bytes[position] != UInt8(ascii: "\\"),
                    bytes[position] >= 0x20
                {
                    position += 1
                }
                text += try validated(runStart..<position)
            }
        }
        throw failure("unterminated string")
    }

    /// After `\u`: four hex digits, and for a high surrogate the `\u` low surrogate that must follow.
    private mutating func unicodeEscape() throws(JSONParseError) -> Unicode.Scalar {
        let first = try hexQuad()
        switch first {
        case 0xD800...0xDBFF:
            guard bytes.count - position >= 2, bytes[position] == UInt8(ascii: "\\"), bytes[position + 1] == UInt8(ascii: "u") else {
                throw failure("a high surrogate without its low surrogate")
            }
            position += 2
            let second = try hexQuad()
            guard (0xDC00...0xDFFF).contains(second) else { throw failure("a high surrogate without its low surrogate") }
            return Unicode.Scalar(0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00))!
        case 0xDC00...0xDFFF:
            throw failure("a low surrogate without its high surrogate")
        default:
            return Unicode.Scalar(first)!
        }
    }

    private mutating func hexQuad() throws(JSONParseError) -> UInt32 {
        guard bytes.count - position >= 4 else { throw failure("unexpected end of text") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[position]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw failure("invalid hex digit in \\u escape")
            }
            value = value << 4 | UInt32(digit)
            position += 1
        }
        return value
    }

    private func validated(_ range: Range<Int>) throws(JSONParseError) -> String {
        guard let text = String(validating: UnsafeBufferPointer(rebasing: bytes[range]), as: UTF8.self) else {
            throw JSONParseError(offset: range.lowerBound, problem: "invalid UTF-8 in a string")
        }
        return text
    }
}
