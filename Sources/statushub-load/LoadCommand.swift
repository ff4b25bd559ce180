import ArgumentParser
import Foundation
import StatusHubCore

@main
struct LoadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "statushub-load",
        abstract: "Load-test harness for StatusHub: WebSocket fan-out latency under an open-loop publish rate.",
        subcommands: [RunCommand.self, ChurnCommand.self, StormCommand.self, ResumeCommand.self, ResumeSliceCommand.self]
    )

    /// ArgumentParser's own `main`, after raising the open-files limit as the hub does (`DescriptorLimit`): every
    /// subscriber the harness opens holds a descriptor, and a shell's soft limit of 1,024 stopped it at ~1,000.
    static func main() async {
        DescriptorLimit.raiseToHard()
        await main(nil)
    }
}

/// How subscriber `i` subscribes.
enum Mapping: ExpressibleByArgument, CustomStringConvertible, Sendable, Equatable {
    /// Every subscriber on `resource-status` (every published event reaches every subscriber).
    case oneChannel
    /// Subscriber `i` on `line:Line-{i % K}:*`; events are spread over K lines, so each reaches ~N/K subscribers.
    case lines(Int)
    /// Every subscriber on `machine:*` (every published event reaches every subscriber, via the wildcard path).
    case wildcard

    init?(argument: String) {
        switch argument {
        case "one-channel": self = .oneChannel
        case "wildcard": self = .wildcard
        default:
            guard argument.hasPrefix("lines:"), let k = Int(argument.dropFirst("lines:".count)), k > 0 else { return nil }
            self = .lines(k)
        }
    }

    var description: String {
        switch self {
        case .oneChannel: "one-channel"
        case .lines(let k): "lines:\(k)"
        case .wildcard: "wildcard"
        }
    }

    func pattern(forSubscriber index: Int) -> String {
        switch self {
        case .oneChannel: "resource-status"
        case .lines(let k): "line:Line-\(index % k):*"
        case .wildcard: "machine:*"
        }
    }
}

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Open subscribers, publish at a fixed rate, measure publish-to-delivery latency, loss and order.",
        discussion: """
            Opens --subscribers WebSocket connections (each subscribes per --mapping and waits for the \
            'subscribed' reply), then --publishers keep-alive HTTP/1.1 connections POST machine \
            resource_status_changed events (or, with --mix, a plant's mix of event types or alerts only) to /v1/events \
            at a total of --rate events/s (open loop: requests \
            are sent on schedule whether or not earlier ones were answered; they are pipelined). Every event \
            carries data.load_sent_ns (CLOCK_MONOTONIC ns at send), data.load_seq ("<publisher>-<seq>") and \
            data.load_run; each delivery's latency is now - load_sent_ns, so the harness must run on the same \
            machine as the hub. After --duration it waits up to --drain seconds for in-flight deliveries.

            Mappings (N subscribers; expected deliveries per accepted event):
              one-channel  all on 'resource-status'                 N
              lines:K      subscriber i on 'line:Line-{i%K}:*'      ~N/K
              wildcard     all on 'machine:*'                       N

            Exit status: 0 when nothing was lost, no subscriber dropped and every \
            publish was accepted; 1 otherwise; 2 when subscribers could not \
            connect.

            Example:
              statushub-load run --url http://127.0.0.1:8080 --subscribers 100 \\
                --rate 200 --duration 20 --mapping lines:10 --json out.json
            """
    )

    @Option(help: "Hub base URL (HTTP); the WebSocket URL is derived from it (ws://…/v1/ws).")
    var url = "http://127.0.0.1:8080"

    @Option(help: "WebSocket URL, when it differs from the one derived from --url.")
    var wsURL: String?

    @Option(help: ArgumentHelp(
        "Drive another server: HTTP publish URL with {channel}, e.g. http://127.0.0.1:8081/pub?id={channel}.",
        discussion: "With --subscribe-url-template: each event is POSTed alone (raw event JSON) to its channel, subscribers connect to their channel's URL and send nothing; any 2xx counts as accepted."))
    var publishURLTemplate: String?

    @Option(help: "WebSocket subscribe URL with {channel}, e.g. ws://127.0.0.1:8081/sub/{channel} (with --publish-url-template).")
    var subscribeURLTemplate: String?

    @Option(name: .customLong("hub-pid"), help: "A server process to watch (RSS, CPU time), repeatable: e.g. the hub and redis-server.")
    var hubPIDs: [Int32] = []

    @Option(help: "Draw latency over time (p50, p99, max per second) as an SVG picture to this file.")
    var svg: String?

    @Option(help: "Number of WebSocket subscribers.")
    var subscribers = 100

    @Option(help: "Number of publishers (one keep-alive HTTP/1.1 connection each).")
    var publishers = 1

    @Option(help: "Total target publish rate, events per second (shared evenly by the publishers).")
    var rate: Double = 200

    @Option(help: "Publishing duration, seconds.")
    var duration: Double = 10

    @Option(help: "Events per POST (>1 sends a JSON array); the request rate is --rate / --batch.")
    var batch = 1

    @Option(help: "Subscription mapping: one-channel, lines:K or wildcard.")
    var mapping: Mapping = .oneChannel

    @Option(help: ArgumentHelp(
        "Distinct subscribe filters (0: none). Subscriber i sends filter number i modulo this, each one that admits every event, so the deliveries match an unfiltered run and only the filters' cost differs."))
    var filters = 0

    @Option(help: "Lines the events are spread over when --mapping is not lines:K (lines:K uses K).")
    var lines = 10

    @Option(help: "Distinct machines (entity_id M-{n}, n = event number modulo this).")
    var machines = 1000

    @Option(help: "What is published: machine-status (machine resource_status_changed only), operator-status (operators with a name, which the catalog restricts to tokens with the claim pii), plant (machines, operators, work orders, material, alerts, allocations; needs --mapping lines:K) or alerts (machine alert_raised only, events that carry no state; needs --mapping lines:K with subscribers).")
    var mix: EventMix = .machineStatus

    @Option(name: .customLong("token"), help: "A subscriber token (JWT), repeatable: subscriber i connects with token i modulo their number (?token=).")
    var tokens: [String] = []

    @Option(help: "The publishers' API key (Authorization: Bearer), for a hub with auth.api_keys.")
    var apiKey: String?

    @Option(help: "Size of each event's data object, bytes (padded with data.pad; the minimum is ~130; the whole event is ~200 more).")
    var payloadBytes = 200

    @Option(help: "Seconds to wait after publishing for in-flight deliveries.")
    var drain: Double = 2

    @Option(help: "Subscribers connecting at the same time.")
    var connectConcurrency = 50

    @Option(help: "Seconds allowed for all subscribers to connect and subscribe.")
    var connectTimeout: Double = 30

    @Option(help: ArgumentHelp(SourceAddresses.help))
    var sourceAddresses: SourceAddresses?

    @Option(help: "Unanswered requests a publisher allows before it skips a scheduled send (counted as failed).")
    var maxInFlight = 1000

    @Option(help: "Event-loop threads (default: the CPUs this process may use, taskset included).")
    var threads: Int?

    @Option(help: "Write the results as JSON to this file.")
    var json: String?

    @Flag(help: "No progress line each second.")
    var quiet = false

    @Flag(help: "Subscribe in the WebSocket URL (/v1/ws?channels=…), not with a subscribe message: one round trip less per connection. Subscribed still means the hub's 'subscribed' reply arrived.")
    var subscribeInURL = false

    @Flag(help: "Offer permessage-deflate as browsers do (permessage-deflate; client_max_window_bits): the subscribe goes out compressed, compressed messages are inflated.")
    var compression = false

    func validate() throws {
        guard subscribers >= 0 else { throw ValidationError("--subscribers must be >= 0") }
        guard publishers >= 1 else { throw ValidationError("--publishers must be >= 1") }
        guard rate > 0, duration > 0 else { throw ValidationError("--rate and --duration must be > 0") }
        guard batch >= 1 else { throw ValidationError("--batch must be >= 1") }
        guard lines >= 1, machines >= 1 else { throw ValidationError("--lines and --machines must be >= 1") }
        if mix == .plant {
            guard case .lines = mapping else {
                throw ValidationError("--mix plant needs --mapping lines:K: its events go to several categories, and a line's pattern is what sees all of them")
            }
        }
        if mix == .alerts, subscribers > 0 {
            guard case .lines = mapping else {
                throw ValidationError("--mix alerts with subscribers needs --mapping lines:K: alerts are not on 'resource-status'; a line's pattern sees them")
            }
        }
        guard connectConcurrency >= 1, maxInFlight >= 1 else {
            throw ValidationError("--connect-concurrency and --max-in-flight must be >= 1")
        }
        guard drain >= 0 else { throw ValidationError("--drain must be >= 0") }
        guard let parsed = URL(string: url), parsed.scheme == "http", parsed.host != nil else {
            throw ValidationError("--url must be http://host[:port]")
        }
        if (publishURLTemplate == nil) != (subscribeURLTemplate == nil) {
            throw ValidationError("--publish-url-template and --subscribe-url-template go together")
        }
        if publishURLTemplate != nil {
            guard batch == 1 else { throw ValidationError("URL templates publish one event per request: --batch must be 1") }
            guard mapping != .wildcard else { throw ValidationError("URL templates support one-channel and lines:K") }
            guard let parsed = URL(string: publishURLTemplate!.replacingOccurrences(of: "{channel}", with: "c")),
                  parsed.scheme == "http", parsed.host != nil
            else { throw ValidationError("--publish-url-template must be http://host[:port]/path…{channel}…") }
        }
        if rate / Double(publishers) / Double(batch) * duration < 1 {
            throw ValidationError("--rate x --duration / (--publishers x --batch) is below one request per publisher")
        }
    }

    func run() async throws {
        let parsed = URL(string: publishURLTemplate?.replacingOccurrences(of: "{channel}", with: "c") ?? url)!
        let host = parsed.host!
        let port = parsed.port ?? 80
        let config = LoadConfig(
            host: host, port: port,
            wsURL: wsURL ?? "ws://\(host):\(port)/v1/ws",
            templates: publishURLTemplate.map { URLTemplates(publish: $0, subscribe: subscribeURLTemplate!) },
            hubPIDs: hubPIDs,
            subscribers: subscribers, publishers: publishers, rate: rate, duration: duration, batch: batch,
            mapping: mapping, lineCount: { if case .lines(let k) = mapping { k } else { lines } }(),
            machines: machines, mix: mix, tokens: tokens, apiKey: apiKey, payloadBytes: payloadBytes, drain: drain,
            connectConcurrency: connectConcurrency, connectTimeout: connectTimeout, maxInFlight: maxInFlight,
            threads: max(1, threads ?? CPUAffinity.allowedCPUs()), progress: !quiet, filters: max(0, filters),
            sourceAddresses: sourceAddresses, compression: compression, subscribeInURL: subscribeInURL
        )
        let outcome = try await LoadRun(config: config).run()
        print(outcome.report.table())
        if let svg {
            try LatencyChart(report: outcome.report).svg().write(toFile: svg, atomically: true, encoding: .utf8)
        }
        if let json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            try encoder.encode(outcome.report).write(to: URL(fileURLWithPath: json))
        }
        if outcome.exitCode != 0 { throw ExitCode(outcome.exitCode) }
    }
}

/// Another server's publish and subscribe URLs, `{channel}` replaced per event and per subscriber.
struct URLTemplates: Sendable {
    var publish: String
    var subscribe: String

    /// The path and query of the publish URL for `channel` (the request target).
    func publishTarget(_ channel: String) -> String {
        let url = URL(string: publish.replacingOccurrences(of: "{channel}", with: channel))!
        return url.path + (url.query.map { "?" + $0 } ?? "")
    }

    func subscribeURL(_ channel: String) -> String { subscribe.replacingOccurrences(of: "{channel}", with: channel) }
}

struct LoadConfig: Sendable {
    var host: String
    var port: Int
    var wsURL: String
    /// Set when driving another server (Nchan) instead of StatusHub.
    var templates: URLTemplates?
    var hubPIDs: [Int32]
    var subscribers: Int
    var publishers: Int
    var rate: Double
    var duration: Double
    var batch: Int
    var mapping: Mapping
    /// Events go to line `Line-{(n % machines) % lineCount}`.
    var lineCount: Int
    var machines: Int
    var mix: EventMix
    /// Subscriber tokens, dealt round-robin (none: no token).
    var tokens: [String]
    /// The publishers' API key; nil: none sent.
    var apiKey: String?

    /// The WebSocket URL of subscriber `index`, with its token.
    func wsURL(forSubscriber index: Int) -> String {
        guard !tokens.isEmpty else { return wsURL }
        return wsURL + (wsURL.contains("?") ? "&" : "?") + "token=" + tokens[index % tokens.count]
    }
    var payloadBytes: Int
    var drain: Double
    var connectConcurrency: Int
    var connectTimeout: Double
    var maxInFlight: Int
    var threads: Int
    var progress: Bool

    /// The line index of publisher `publisher`'s event `seq` (global event number n = seq × P + publisher).
    func lineIndex(publisher: Int, seq: Int) -> Int { machineIndex(publisher: publisher, seq: seq) % lineCount }
    func machineIndex(publisher: Int, seq: Int) -> Int { (seq &* publishers &+ publisher) % machines }

    /// Batches each publisher sends, and so the events it plans.
    var batchesPerPublisher: Int { Int(rate / Double(publishers) * duration / Double(batch)) }
    var eventsPerPublisher: Int { batchesPerPublisher * batch }

    /// With URL templates: the channel subscriber `index` listens on, and the one an event of line `line` goes to.
    func templateChannel(forSubscriber index: Int) -> String {
        if case .lines(let k) = mapping { return "line-\(index % k)" }
        return "resource-status"
    }

    func templateChannel(forLine line: Int) -> String {
        if case .lines = mapping { return "line-\(line)" }
        return "resource-status"
    }

    /// Subscribers whose pattern matches an event on line `line`.
    func receivers(ofLine line: Int) -> Int {
        switch mapping {
        case .oneChannel, .wildcard: subscribers
        case .lines(let k): subscribers / k + (line < subscribers % k ? 1 : 0)
        }
    }
    /// Distinct subscribe filters (`--filters`).
    var filters = 0
    /// Local addresses subscriber sockets are bound to (`--source-addresses`), nil: the kernel picks.
    var sourceAddresses: SourceAddresses?
    /// Whether subscribers offer permessage-deflate (`--compression`).
    var compression = false
    /// Whether subscribers subscribe in the URL (`--subscribe-in-url`).
    var subscribeInURL = false
}
