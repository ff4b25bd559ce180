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

    /// Whether `channel` is one of the channels this pattern names. Walks the channel's UTF-8 bytes segment by
    /// segment without splitting it: a resume storm matches every replayed event's channels against every resuming
    /// subscriber's patterns, and splitting by `Character` (grapheme breaking, an array per channel) took 4–5 µs an
    /// event of three channels where this takes ~0.25 µs (`statushub-bench match`, loadtest/RESULTS.md). Byte
    /// equality is `String` equality here: literal segments are ASCII (`ChannelName.isValidSegment`).
    public func matches(_ channel: String) -> Bool {
        if let verdict = channel.utf8.withContiguousStorageIfAvailable(matches(bytes:)) { return verdict }
        // Only a bridged string is not contiguous (never on Linux).
        var native = channel
        native.makeContiguousUTF8()
        return native.utf8.withContiguousStorageIfAvailable(matches(bytes:)) ?? false
    }

    private func matches(bytes channel: UnsafeBufferPointer<UInt8>) -> Bool {
        let separator = ChannelName.separatorByte
        // A channel has one segment more than it has separators, so there is always a first one to look at.
        var start = 0
        var more = true
        for segment in segments {
            guard more else { return false }
            var end = start
            while end < channel.count && channel[end] != separator { end += 1 }
            let part = UnsafeBufferPointer(rebasing: channel[start..<end])
            switch segment {
            // A wildcard never matches a tenant segment (`@acme`, see `Tenant`): `*` stays within its tenant.
            case .rest:
                return part.first != Tenant.marker
            case .one:
                guard part.first != Tenant.marker else { return false }
            case .literal(let literal):
                let equal = literal.utf8.withContiguousStorageIfAvailable { $0.elementsEqual(part) } ?? literal.utf8.elementsEqual(part)
                guard equal else { return false }
            }
            if end == channel.count { more = false } else { start = end + 1 }
        }
        return !more
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

    /// Whether some channel on line `line` (`line:<line>:<category>:…`, `ChannelName.channels`) is one this pattern
    /// matches.
    public func reaches(line: String) -> Bool {
        func admits(_ segment: Segment, _ value: String) -> Bool {
            if case .literal(let literal) = segment { return literal == value }
            return true
        }
        guard let first = segments.first else { return false }
        if case .rest = first { return true }
        guard admits(first, "line"), segments.count >= 2 else { return false }
        if case .rest = segments[1] { return true }
        return admits(segments[1], line) && segments.count >= 3
    }

    /// Whether some pattern of `allowed` contains this one.
    public func isAllowed(by allowed: [ChannelPattern]) -> Bool {
        allowed.contains { $0.contains(self) }
    }
}
