/// The rules channel names and their segments follow, and the channels an event belongs to.
///
/// A channel is `:`-separated segments of `[A-Za-z0-9._-]`. Entity ids and line names obey the same rule,
/// so an id can never smuggle a `:` or a `*` into a channel or a cache key.
public enum ChannelName {
    public static let separator: Character = ":"
    /// The separator as the byte a channel's UTF-8 holds (`ChannelPattern.matches` walks the bytes).
    public static let separatorByte = separator.asciiValue!
    public static let maxSegmentLength = 128

    public static func isValidSegment(_ segment: Substring) -> Bool {
        !segment.isEmpty && segment.utf8.count <= maxSegmentLength && segment.utf8.allSatisfy(isSegmentByte)
    }

    public static func isValidSegment(_ segment: String) -> Bool { isValidSegment(segment[...]) }

    /// `.` and `..`: allowed by the channel grammar, but a URL resolves them away, so an entity named so could not be
    /// read back by path (`/v1/state/machine/..` is not that entity).
    public static func isDotSegment(_ segment: String) -> Bool { segment == "." || segment == ".." }

    public static let dotSegmentRule = "is a dot segment, which URLs resolve away, so it could not be read back by path"

    static func isSegmentByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."):
            true
        default:
            false
        }
    }

    public static let segmentRule = "1-\(maxSegmentLength) characters of A-Z a-z 0-9 . _ -"

    /// Every channel an event belongs to: its category, its entity address, and on a line the line address.
    public static func channels(
        category: EventCategory, entityType: EntityType, entityID: String, line: String?
    ) -> [String] {
        var channels = [category.rawValue, "\(entityType.rawValue):\(entityID)"]
        if let line {
            channels.append("line:\(line):\(category.rawValue):\(entityType.rawValue):\(entityID)")
        }
        return channels
    }
}
