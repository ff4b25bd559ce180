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
