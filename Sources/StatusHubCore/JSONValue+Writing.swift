/// `JSONValue` written straight to bytes: keys sorted, `/` unescaped, whole numbers as integers — what
/// `JSONEncoder` with `[.sortedKeys, .withoutEscapingSlashes]` writes, at a fraction of the cost.
///
/// Written by hand because the generic Codable path (a container per value, boxed keys, a sort of `CodingKey`s)
/// was 14 % of the hub's CPU per ingested event in `perf` (loadtest/RESULTS.md); this closed enum needs none of it.
/// `JSONValueWritingTests` check it against `JSONEncoder` on every value the ingest fuzzer produces.
extension JSONValue {
    public func write(into out: inout [UInt8]) {
        switch self {
        case .null: out.append(contentsOf: "null".utf8)
        case .bool(let value): out.append(contentsOf: (value ? "true" : "false").utf8)
        case .number(let value): Self.write(number: value, into: &out)
        case .string(let value): Self.write(string: value, into: &out)
        case .array(let items):
            out.append(UInt8(ascii: "["))
            for (position, item) in items.enumerated() {
                if position > 0 { out.append(UInt8(ascii: ",")) }
                item.write(into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let members):
            Self.write(members: members.sorted { $0.key < $1.key }, into: &out)
        }
    }

    /// An object with its members in the order given (the caller sorts).
    public static func write(members: [(key: String, value: JSONValue)], into out: inout [UInt8]) {
        out.append(UInt8(ascii: "{"))
        write(memberList: members, into: &out)
        out.append(UInt8(ascii: "}"))
    }

    /// Members in the order given, comma-separated, without the object's braces: for a caller that writes an object in
    /// parts into one buffer.
    public static func write(memberList members: [(key: String, value: JSONValue)], into out: inout [UInt8]) {
        for (position, member) in members.enumerated() {
            if position > 0 { out.append(UInt8(ascii: ",")) }
            write(string: member.key, into: &out)
            out.append(UInt8(ascii: ":"))
            member.value.write(into: &out)
        }
    }

    public static func write(number value: Double, into out: inout [UInt8]) {
        // As `encode(to:)`: an id like 42 must not come back as 42.0. Non-finite numbers never get this far (the
        // decoder refuses them), but would be written as null rather than as invalid JSON.
        if value.rounded() == value, abs(value) < 9_007_199_254_740_992 {
            out.append(contentsOf: String(Int64(value)).utf8)
        } else if value.isFinite {
            // JSONEncoder's form: the shortest round-trip text, without a trailing ".0".
            let text = value.description
            out.append(contentsOf: (text.hasSuffix(".0") ? text.dropLast(2) : Substring(text)).utf8)
        } else {
            out.append(contentsOf: "null".utf8)
        }
    }

    public static func write(string: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        // Runs of bytes that need no escape are copied whole: a byte-by-byte append was the hub's largest own cost
        // on batched ingest (stored events are mostly such runs; loadtest/RESULTS.md, issue 14 pass).
        var string = string
        string.withUTF8 { bytes in
            var runStart = 0
            for index in bytes.indices where bytes[index] < 0x20 || bytes[index] == 0x22 || bytes[index] == 0x5C {
                out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<index]))
                appendEscape(of: bytes[index], to: &out)
                runStart = index + 1
            }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart...]))
        }
        out.append(UInt8(ascii: "\""))
    }

    private static func appendEscape(of byte: UInt8, to out: inout [UInt8]) {
        switch byte {
        case UInt8(ascii: "\""): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
        case UInt8(ascii: "\\"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
        case 0x0A: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
        case 0x0D: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
        case 0x09: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
        case 0x08: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "b")])
        case 0x0C: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "f")])
        default:
            let hex = Array("0123456789abcdef".utf8)
            out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"), hex[Int(byte >> 4)], hex[Int(byte & 0xF)]])
        }
    }
}
