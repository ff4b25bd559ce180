import ArgumentParser
import StatusHubCore

/// `statushub-bench match`: CPU per event of matching an event's channels against a subscription pattern, the
/// byte walk `ChannelPattern.matches` does against the rule it replaced — split each channel by `Character`, then
/// compare segment by segment — on the same channels, in one process, passes alternating. Before timing, it checks
/// that both give every pair the same answer.
struct MatchBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "match",
        abstract: "Time channel matching: the byte walk against splitting channels by Character.",
        discussion: """
            Builds --events events' channels (a machine, an operator or a work order on one of 20 lines, as \
            `ChannelName.channels` names them) and matches each event against --pattern (any channel matching), \
            --rounds rounds, each pass over the whole set with each way, alternating which goes first; prints \
            thread CPU nanoseconds per event.

            Example:
              swift build -c release --product statushub-bench
              .build/release/statushub-bench match --events 100000 --rounds 5
            """
    )

    @Option(help: "Events in the set.")
    var events = 100_000

    @Option(help: "Rounds; each times both ways once over the whole set.")
    var rounds = 5

    @Option(help: "The subscription pattern matched against every event's channels.")
    var pattern = "line:Line-0:*"

    func run() throws {
        let pattern = try ChannelPattern(parsing: pattern)
        let corpus = Self.corpus(count: events)
        for channels in corpus {
            for channel in channels where pattern.matches(channel) != Self.splitting(pattern, channel) {
                throw ValidationError("the two ways disagree on \(pattern) against '\(channel)'")
            }
        }
        print("match: \(corpus.count) events of \(corpus[0].count) channels, both ways agree on every channel")
        print("round  Character split ns/event  byte walk ns/event")
        var ratios: [Double] = []
        for round in 1...rounds {
            let order = round % 2 == 0 ? [0, 1] : [1, 0]
            var nanos = [UInt64](repeating: 0, count: 2)
            for way in order {
                nanos[way] = way == 0
                    ? Self.time(corpus) { Self.splitting(pattern, $0) }
                    : Self.time(corpus) { pattern.matches($0) }
            }
            let split = Double(nanos[0]) / Double(corpus.count)
            let walk = Double(nanos[1]) / Double(corpus.count)
            ratios.append(split / walk)
            print(String(format: "%5d  %24.0f  %18.0f", round, split, walk))
        }
        print(String(format: "split/walk: %.1f-%.1f", ratios.min()!, ratios.max()!))
    }

    /// The rule as it was written before the byte walk: the channel split by `Character` at every `:`, then each
    /// segment compared (a wildcard never stands for a tenant segment).
    static func splitting(_ pattern: ChannelPattern, _ channel: String) -> Bool {
        let parts = channel.split(separator: ChannelName.separator, omittingEmptySubsequences: false)
        for (index, segment) in pattern.segments.enumerated() {
            guard index < parts.count else { return false }
            switch segment {
            case .rest: return !Tenant.isTenantSegment(parts[index])
            case .one: if Tenant.isTenantSegment(parts[index]) { return false }
            case .literal(let literal): if parts[index] != literal { return false }
            }
        }
        return parts.count == pattern.segments.count
    }

    /// Thread CPU nanoseconds of one pass: each event's channels, until one matches.
    static func time(_ corpus: [[String]], _ matches: (String) -> Bool) -> UInt64 {
        var matched = 0
        let start = ValidateBenchCommand.threadCPUNanoseconds()
        for channels in corpus where channels.contains(where: matches) { matched += 1 }
        let elapsed = ValidateBenchCommand.threadCPUNanoseconds() - start
        precondition(matched > 0)
        return elapsed
    }

    static func corpus(count: Int) -> [[String]] {
        let kinds: [(EventCategory, EntityType)] = [
            (.resourceStatus, .machine), (.resourceStatus, .operator), (.workOrderProgress, .workOrder),
        ]
        return (0..<count).map { index in
            let (category, entityType) = kinds[index % kinds.count]
            return ChannelName.channels(
                category: category, entityType: entityType, entityID: "E-\(index % 500)", line: "Line-\(index % 20)")
        }
    }
}
