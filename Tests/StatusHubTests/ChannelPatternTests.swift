import StatusHubCore
import Testing

@Suite("Channel patterns")
struct ChannelPatternTests {
    func matches(_ pattern: String, _ channel: String) throws -> Bool {
        try ChannelPattern(parsing: pattern).matches(channel)
    }

    @Test func exactPatternMatchesOnlyItsChannel() throws {
        #expect(try matches("resource-status", "resource-status"))
        #expect(try !matches("resource-status", "alerts"))
        #expect(try !matches("machine:M-1", "machine:M-10"))
    }

    @Test func innerStarIsExactlyOneSegment() throws {
        #expect(try matches("line:*:alerts:*", "line:Line-2:alerts:machine:M-1"))
        #expect(try !matches("line:*:alerts:*", "line:Line-2:resource-status:machine:M-1"))
        #expect(try matches("machine:*", "machine:M-203"))
        #expect(try !matches("*:M-1", "line:Line-2:alerts:machine:M-1"))
        #expect(try matches("*:M-1", "machine:M-1"))
    }

    @Test func trailingStarIsOneOrMoreSegments() throws {
        #expect(try matches("line:Line-2:*", "line:Line-2:resource-status:machine:M-1"))
        #expect(try !matches("line:Line-2:*", "line:Line-2"))
        #expect(try !matches("line:Line-2:*", "line:Line-3:alerts:machine:M-1"))
        #expect(try matches("*", "alerts"))
        #expect(try matches("*", "line:Line-2:alerts:machine:M-1"))
    }

    @Test func wildcardsStayOutOfTenantSegments() throws {
        #expect(try !matches("*", "@acme:alerts"))
        #expect(try !matches("*:alerts", "@acme:alerts"))
        #expect(try !matches("line:*", "line:@acme"))
        #expect(try matches("line:*", "line:Line-2:@acme"))  // only the first segment a trailing `*` stands for
    }

    /// The matcher walks a channel's bytes; this is the rule it implements, written the plain way (split at every
    /// `:`), checked on every pair of a set of patterns and channels that includes empty segments, trailing and
    /// leading separators, tenant segments and near misses.
    @Test func walkingTheBytesAgreesWithSplittingTheChannel() throws {
        func reference(_ pattern: ChannelPattern, _ channel: String) -> Bool {
            let parts = channel.split(separator: ":", omittingEmptySubsequences: false)
            for (index, segment) in pattern.segments.enumerated() {
                guard index < parts.count else { return false }
                switch segment {
                case .rest: return !parts[index].hasPrefix("@")
                case .one: if parts[index].hasPrefix("@") { return false }
                case .literal(let literal): if parts[index] != literal { return false }
                }
            }
            return parts.count == pattern.segments.count
        }
        let patterns = try [
            "alerts", "*", "line:*", "line:Line-2", "line:Line-2:*", "line:*:alerts:*", "*:M-1", "machine:M-1", "a:*:c",
            "line:Line-2:alerts:machine:M-1", "line:Line-2:alerts:machine:M-1:*",
        ].map(ChannelPattern.init(parsing:))
        let channels = [
            "", ":", "::", "alerts", "alerts:", ":alerts", "alert", "alertss", "line", "line:", "line:Line-2", "line:Line-2:",
            "line:Line-2:alerts:machine:M-1", "line:Line-2:alerts:machine:M-10", "line:Line-20:alerts:machine:M-1",
            "machine:M-1", "machine:M-1:", "x:M-1", "@acme", "@acme:alerts", "line:@acme", "a:b:c", "a::c", "a:@b:c", "a:b:c:d",
        ]
        for pattern in patterns {
            for channel in channels {
                #expect(pattern.matches(channel) == reference(pattern, channel), "\(pattern) against '\(channel)'")
            }
        }
    }

    @Test(arguments: ["", "line::x", "line:Line 2:*", "a:b:c:d:e:f:g:h:i", "machine:M-1?", ":alerts", "alerts:"])
    func invalidPatternsAreRefusedWithReason(_ text: String) {
        #expect(throws: FieldError.self) { try ChannelPattern(parsing: text) }
        do {
            _ = try ChannelPattern(parsing: text)
        } catch {
            #expect(error.field == "channels")
            #expect(error.reason.hasPrefix("invalid pattern"))
        }
    }
}
