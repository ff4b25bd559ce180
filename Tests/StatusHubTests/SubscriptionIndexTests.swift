import StatusHubCore
import Testing

@Suite("Subscription index")
struct SubscriptionIndexTests {
    let channels = ["alerts", "machine:M-1", "line:Line-2:alerts:machine:M-1"]

    func pattern(_ text: String) -> ChannelPattern { try! ChannelPattern(parsing: text) }

    @Test func findsExactAndWildcardSubscribersOnce() {
        let index = SubscriptionIndex<Int>()
        index.add(1, to: pattern("alerts"))
        index.add(1, to: pattern("line:Line-2:*"))  // same subscriber, second matching pattern
        index.add(2, to: pattern("machine:*"))
        index.add(3, to: pattern("line:*:alerts:*"))
        index.add(4, to: pattern("resource-status"))
        index.add(5, to: pattern("*"))
        index.add(6, to: pattern("line:Line-3:*"))
        #expect(index.subscribers(matching: channels) == [1, 2, 3, 5])
    }

    @Test func removalPrunesAndStopsDelivery() {
        let index = SubscriptionIndex<Int>()
        index.add(1, to: pattern("line:*:alerts:*"))
        index.add(2, to: pattern("line:*:alerts:*"))
        index.remove(1, from: pattern("line:*:alerts:*"))
        #expect(index.subscribers(matching: channels) == [2])
        index.remove(2, from: pattern("line:*:alerts:*"))
        #expect(index.subscribers(matching: channels).isEmpty)
        #expect(index.isEmpty)
    }

    /// Whether anyone is in the index is kept apart from the shards' locks: it must follow every add and remove, from
    /// many threads at once, so a lookup never skips a shard that holds someone.
    @Test func emptinessFollowsConcurrentAddsAndRemoves() async {
        let index = SubscriptionIndex<Int>(shardCount: 4)
        let patterns = ["alerts", "machine:*", "line:*:alerts:*", "*", "operator:O-1", "line:Line-2:*"].map(pattern)
        #expect(index.isEmpty)
        for round in 0..<3 {
            await withTaskGroup(of: Void.self) { group in
                for subscriber in 0..<8 {
                    group.addTask {
                        for _ in 0..<200 {
                            for pattern in patterns { index.add(subscriber, to: pattern) }
                            for pattern in patterns { index.remove(subscriber, from: pattern) }
                        }
                        index.add(subscriber, to: patterns[subscriber % patterns.count])
                    }
                }
            }
            #expect(!index.isEmpty, "round \(round)")
            #expect(index.subscribers(matching: ["alerts"]) == [0, 3, 6])
            for subscriber in 0..<8 { index.remove(subscriber, from: patterns[subscriber % patterns.count]) }
            #expect(index.isEmpty, "round \(round)")
            #expect(index.subscribers(matching: channels).isEmpty)
        }
    }

    @Test func agreesWithPatternMatchingOnManyPairs() {
        let patterns = ["*", "alerts", "machine:*", "*:M-1", "line:*", "line:Line-2:*", "line:*:alerts:*", "line:*:*:machine:*", "operator:O-1"]
        let channelSets = [
            ["alerts", "machine:M-1", "line:Line-2:alerts:machine:M-1"],
            ["resource-status", "operator:O-1"],
            ["resource-status", "machine:M-2", "line:Line-3:resource-status:machine:M-2"],
        ]
        let index = SubscriptionIndex<Int>(shardCount: 3)
        for (number, text) in patterns.enumerated() { index.add(number, to: pattern(text)) }
        for channels in channelSets {
            let expected = Set(patterns.enumerated().filter { _, text in channels.contains { pattern(text).matches($0) } }.map(\.offset))
            #expect(index.subscribers(matching: channels) == expected, "channels \(channels)")
        }
    }
}
