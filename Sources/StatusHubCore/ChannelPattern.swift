/// A subscription pattern: segments separated by `:`; `*` stands for exactly one segment, except as the last
/// segment, where it stands for the rest of the channel (one or more segments).
public struct ChannelPattern: Sendable, Hashable, CustomStringConvertible {
    public enum Segment: Sendable, Hashable {
        case literal(String)
        case one
        case rest
    }

    public static let maxSegments = 8
    public static let maxLength = 256

    public let text: String
    public let segments: [Segment]

    public var description: String { text }

    /// True when the pattern names one channel only (no wildcard).
    public var isExact: Bool { segments.allSatisfy { if case .literal = $0 { true } else { false } } }

    public init(parsing text: String) throws(FieldError) {
        func refuse(_ reason: String) -> FieldError { FieldError(field: "channels", reason: "invalid pattern '\(text)': \(reason)") }
        guard !text.isEmpty else { throw refuse("empty") }
        guard text.utf8.count <= Self.maxLength else { throw refuse("longer than \(Self.maxLength) bytes") }
        let parts = text.split(separator: ChannelName.separator, omittingEmptySubsequences: false)
        guard parts.count <= Self.maxSegments else { throw refuse("more than \(Self.maxSegments) segments") }
        var segments: [Segment] = []
        for (position, part) in parts.enumerated() {
            if part == "*" {
                segments.append(position == parts.count - 1 ? .rest : .one)
            } else if ChannelName.isValidSegment(part) {
                segments.append(.literal(String(part)))
            } else if part.isEmpty {
                throw refuse("segment \(position + 1) is empty")
            } else {
                throw refuse("segment '\(part)' must be '*' or \(ChannelName.segmentRule)")
            }
        }
        self.text = text
        self.segments = segments
    }

    init(text: String, segments: [Segment]) {
        self.text = text
        self.segments = segments
    }

    public func matches(_ channel: String) -> Bool {
        matches(segments: channel.split(separator: ChannelName.separator, omittingEmptySubsequences: false))
    }

    public func matches(segments channel: [Substring]) -> Bool {
        var index = 0
        for segment in segments {
            switch segment {
            // A wildcard never matches a tenant segment (`@acme`, see `Tenant`): `*` stays within its tenant.
            case .rest:
                return index < channel.count && !Tenant.isTenantSegment(channel[index])
            case .one:
                guard index < channel.count, !Tenant.isTenantSegment(channel[index]) else { return false }
            case .literal(let literal):
                guard index < channel.count, channel[index] == literal else { return false }
            }
            index += 1
        }
        return index == channel.count
    }
}

extension ChannelPattern {
    /// Whether every channel `other` can match is matched by this pattern too (segment by segment: a literal
    /// contains only the same literal, `*` in the middle contains a literal or `*`, a trailing `*` contains any
    /// remainder of one segment or more). Conservative: never true when some channel of `other` escapes it.
    public func contains(_ other: ChannelPattern) -> Bool {
        for (index, segment) in other.segments.enumerated() {
            guard index < segments.count else { return false }
            switch (segments[index], segment) {
            case (.rest, _): return true
            case (.one, .literal), (.one, .one): continue
            case (.literal(let mine), .literal(let theirs)) where mine == theirs: continue
            default: return false
            }
        }
        return other.segments.count == segments.count
    }

    /// Whether some pattern of `allowed` contains this one.
    public func isAllowed(by allowed: [ChannelPattern]) -> Bool {
        allowed.contains { $0.contains(self) }
    }
}
