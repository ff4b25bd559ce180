import StatusHubCore
import Testing

@Suite("Event ids")
struct EventIDTests {
    @Test func readsTheStreamIDShape() {
        #expect(EventID("1763475825678-2") == EventID(milliseconds: 1_763_475_825_678, sequence: 2))
        #expect(EventID("0-0") == .zero)
        #expect(EventID("18446744073709551615-18446744073709551615") == EventID(milliseconds: .max, sequence: .max))
        // Read from a slice of a larger text, as the pub/sub message decoder does.
        let message = "x 1763475825678-12 y"
        #expect(EventID(message.split(separator: " ")[1]) == EventID(milliseconds: 1_763_475_825_678, sequence: 12))
        #expect(EventID(milliseconds: 7, sequence: 3).description == "7-3")
    }

    @Test(arguments: [
        "", "-", "1-", "-1", "1", "1-2-3", "1--2", "+1-2", "1-+2", " 1-2", "1-2 ", "a-1", "1-b", "1.5-2",
        "18446744073709551616-0", "0-18446744073709551616", "3:1763475825678-2", "１-2",
    ])
    func refusesAnythingElse(text: String) {
        #expect(EventID(text) == nil, "\(text)")
    }
}
