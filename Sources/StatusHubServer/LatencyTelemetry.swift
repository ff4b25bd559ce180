import Foundation
import Prometheus
import StatusHubCore
import Synchronization

/// Latency against the budget of each category (the catalog's `latency_budget_ms`; seed 003 §4.3): what the hub
/// measures itself — ingest (`received_at`) to the moment a delivery's frame is handed to its socket, per delivery —
/// and what clients report with `{"op":"report"}` (publish-to-screen as they saw it).
///
/// Fan-out stamps each event once (`stamp`: its ingest instant and category); the stamp travels with the frame to
/// each receiver's writer, which times the delivery when it writes it (`DeliveryTally`) and hands its tally over
/// once per batch (`record`). Frames conflated away or dropped with an overflowing outbox are never written, so
/// never timed. Both figures go to Prometheus histograms per category with over-budget counters, and to a
/// ten-minute window of one-minute slots that `GET /v1/slo` answers from. Clients' figures are kept per tenant there:
/// a tenant's `/v1/slo` shows what its own screens reported, which another tenant's reports cannot skew.
final class LatencyTelemetry: Sendable {
    static let window = 10  // minutes
    static let defaultBudgetMs = 1000
    /// Seconds. Every budget of the shipped catalog is a bound (`latency_budget_ms` 500, 1,000, 2,000, 3,000), so
    /// a dashboard reads the share within budget off one bucket; and the bounds are close under 100 ms, where a
    /// healthy node's deliveries are: with only 25 and 50 ms there, a p99 anywhere between them read as "~50 ms"
    /// (loadtest/RESULTS.md, issue 14). 20 bounds: 23 series per category and histogram.
    static let buckets: [Double] = [
        0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30,
    ]
    /// Samples one report may carry.
    static let maxSamplesPerReport = 1000
    static let deliveryMetric = "statushub_delivery_latency_seconds"

    struct Figures: Sendable {
        var count = 0
        var withinBudget = 0
    }

    private struct Slot {
        var minute = 0
        var hub = Figures()
        var clients = Figures()
    }

    private struct Category: Sendable {
        let name: String
        let hubOverBudget: Counter
        let clientHistogram: ValueHistogram
        let clientOverBudget: Counter
    }

    /// The hub's histogram of one category. Kept here rather than in a Prometheus `ValueHistogram`: that one takes
    /// its lock for every value recorded and cannot add a writer's batch at once, and its registry takes no
    /// collector of ours; so `/metrics` renders this one itself (`writeDeliveryHistogram`).
    private struct DeliveryHistogram {
        /// Per bucket, not cumulative; the last one above every bound.
        var counts = Array(repeating: 0, count: LatencyTelemetry.buckets.count + 1)
        var sum = 0.0
        var count = 0
    }

    private struct State {
        var delivered: [DeliveryHistogram]
        /// Per category (`budgets` order), a ring of one-minute slots of the hub's own figures.
        var slots: [[Slot]]
        /// The same of clients' reports, per tenant (made by its first report).
        var clientSlots: [String: [[Slot]]] = [:]
    }

    /// Budgets in catalog order, for the answer; a `DeliveryStamp` names a category by its place here.
    let budgets: [(category: String, milliseconds: Int)]
    let budgetSeconds: [Double]
    private let categories: [Category]
    private let indexByName: [Substring: Int]
    private let state: Mutex<State>
    private let start = ContinuousClock.now

    init(catalog: Catalog, registry: PrometheusCollectorRegistry) {
        var budgets = catalog.categories.map { ($0.name.rawValue, $0.latencyBudgetMs ?? Self.defaultBudgetMs) }
        // Counters are the hub's own events; their category may not be declared in an older catalog.
        if !budgets.contains(where: { $0.0 == "counters" }) { budgets.append(("counters", Self.defaultBudgetMs)) }
        self.budgets = budgets
        budgetSeconds = budgets.map { Double($0.1) / 1000 }
        categories = budgets.map { name, _ in
            let labels = [("category", name)]
            return Category(
                name: name,
                hubOverBudget: registry.makeCounter(
                    descriptor: .init(namespace: "statushub", metricName: "deliveries_over_budget", unitName: "total",
                        helpText: "Deliveries whose ingest-to-socket-write time passed their category's latency_budget_ms"),
                    labels: labels),
                clientHistogram: registry.makeValueHistogram(
                    descriptor: .init(namespace: "statushub", metricName: "client_latency", unitName: "seconds",
                        helpText: "Publish-to-screen latency reported by clients ({\"op\":\"report\"}), by category"),
                    labels: labels, buckets: Self.buckets),
                clientOverBudget: registry.makeCounter(
                    descriptor: .init(namespace: "statushub", metricName: "client_over_budget", unitName: "total",
                        helpText: "Client-reported deliveries over their category's latency_budget_ms"),
                    labels: labels))
        }
        indexByName = Dictionary(uniqueKeysWithValues: budgets.enumerated().map { (Substring($1.0), $0) })
        state = Mutex(State(
            delivered: Array(repeating: DeliveryHistogram(), count: budgets.count),
            slots: Self.rings(budgets.count)))
    }

    func knows(category: String) -> Bool { indexByName[category[...]] != nil }

    /// Fan-out's part, once per event: its ingest instant and category, for the writers to time each delivery.
    func stamp(_ event: StoredEvent) -> DeliveryStamp? {
        guard let channel = event.channels.first, let receivedAt = Self.receivedAt(in: event.json) else { return nil }
        // A tenant's channels carry its `@tenant:` prefix; the category is the part after it.
        let category = channel.hasPrefix("@") ? channel.drop { $0 != ":" }.dropFirst() : channel[...]
        guard let index = indexByName[category] else { return nil }
        return DeliveryStamp(ingest: receivedAt.timeIntervalSince1970, category: UInt16(index))
    }

    /// A writer's deliveries since its last commit (`DeliveryTally.commit`): one lock for all of them.
    func record(_ tally: DeliveryTally) {
        let minute = currentMinute
        let width = tally.slotsPerCategory
        state.withLock { state in
            for category in categories.indices {
                var count = 0
                for bucket in 0..<width {
                    let delivered = tally.counts[category * width + bucket]
                    guard delivered > 0 else { continue }
                    state.delivered[category].counts[bucket] += delivered
                    count += delivered
                }
                guard count > 0 else { continue }
                state.delivered[category].sum += tally.sums[category]
                state.delivered[category].count += count
                Self.fill(&state.slots[category], minute: minute) { slot in
                    slot.hub.count += count
                    slot.hub.withinBudget += count - tally.overBudget[category]
                }
            }
        }
        for (category, over) in tally.overBudget.enumerated() where over > 0 {
            categories[category].hubOverBudget.increment(by: Int64(over))
        }
    }

    /// A client's report: milliseconds per category, from a subscriber of `tenant`. Returns how many samples were taken.
    func report(_ samples: [String: [Double]], tenant: String) -> Int {
        var taken = 0
        for (name, values) in samples {
            guard let index = indexByName[name[...]] else { continue }
            let category = categories[index]
            var figures = Figures()
            for value in values where taken + figures.count < Self.maxSamplesPerReport {
                let seconds = value / 1000
                category.clientHistogram.record(seconds)
                figures.count += 1
                if seconds <= budgetSeconds[index] { figures.withinBudget += 1 } else { category.clientOverBudget.increment() }
            }
            taken += figures.count
            guard figures.count > 0 else { continue }
            let minute = currentMinute
            state.withLock { state in
                let categoryCount = budgets.count
                Self.fill(&state.clientSlots[tenant, default: Self.rings(categoryCount)][index], minute: minute) { slot in
                    slot.clients.count += figures.count
                    slot.clients.withinBudget += figures.withinBudget
                }
            }
        }
        return taken
    }

    private static func rings(_ categories: Int) -> [[Slot]] {
        Array(repeating: Array(repeating: Slot(), count: window), count: categories)
    }

    /// Adds to the current minute's slot of a ring, reusing the slot of ten minutes ago.
    private static func fill(_ ring: inout [Slot], minute: Int, _ add: (inout Slot) -> Void) {
        let index = minute % window
        if ring[index].minute != minute { ring[index] = Slot(minute: minute) }
        add(&ring[index])
    }

    private var currentMinute: Int { Int(start.duration(to: .now).components.seconds / 60) }

    /// The hub's histogram in Prometheus text, after the registry's metrics on `/metrics`. Category names are
    /// catalog names (letters, digits, `-`), so label values need no escaping.
    func writeDeliveryHistogram(into text: inout [UInt8]) {
        let delivered = state.withLock { $0.delivered }
        let name = Self.deliveryMetric
        text.append(contentsOf: "# HELP \(name) Ingest (received_at) to the socket write, per delivery, by category\n".utf8)
        text.append(contentsOf: "# TYPE \(name) histogram\n".utf8)
        for (category, histogram) in zip(categories, delivered) {
            let label = "category=\"\(category.name)\""
            var cumulative = 0
            for (bound, count) in zip(Self.buckets, histogram.counts) {
                cumulative += count
                text.append(contentsOf: "\(name)_bucket{\(label),le=\"\(bound.description)\"} \(cumulative)\n".utf8)
            }
            text.append(contentsOf: "\(name)_bucket{\(label),le=\"+Inf\"} \(histogram.count)\n".utf8)
            text.append(contentsOf: "\(name)_sum{\(label)} \(histogram.sum.description)\n".utf8)
            text.append(contentsOf: "\(name)_count{\(label)} \(histogram.count)\n".utf8)
        }
    }

    /// `GET /v1/slo`: per category, its budget and the last ten minutes' figures, measured by the hub (node-wide)
    /// and reported by `tenant`'s clients.
    func sloJSON(tenant: String) -> JSONValue {
        let minute = currentMinute
        let (rings, clientRings) = state.withLock { ($0.slots, $0.clientSlots[tenant] ?? Self.rings(budgets.count)) }
        func figures(_ pick: (Slot) -> Figures, _ ring: [Slot]) -> JSONValue {
            var total = Figures()
            for slot in ring where slot.minute > minute - Self.window && slot.minute <= minute {
                total.count += pick(slot).count
                total.withinBudget += pick(slot).withinBudget
            }
            var members: [String: JSONValue] = [
                "count": .number(Double(total.count)), "within_budget": .number(Double(total.withinBudget)),
                "over_budget": .number(Double(total.count - total.withinBudget)),
            ]
            if total.count > 0 { members["within_budget_ratio"] = .number(Double(total.withinBudget) / Double(total.count)) }
            return .object(members)
        }
        return .object([
            "window_seconds": .number(Double(Self.window * 60)),
            "categories": .array(budgets.indices.map { index in
                .object([
                    "category": .string(budgets[index].category), "budget_ms": .number(Double(budgets[index].milliseconds)),
                    "hub": figures(\.hub, rings[index]), "clients": figures(\.clients, clientRings[index]),
                ])
            }),
        ])
    }

    private static let receivedAtKey = Array(#""received_at":""#.utf8)

    /// The event's `received_at`, found from the end: keys are sorted, and only `tenant` and `timestamp` follow it.
    static func receivedAt(in json: [UInt8]) -> Date? {
        let key = receivedAtKey
        var index = json.count - key.count
        while index >= 0 {
            if json[index] == key[0], json[index..<index + key.count].elementsEqual(key) {
                let start = index + key.count
                guard let end = json[start...].firstIndex(of: UInt8(ascii: "\"")) else { return nil }
                return Self.parseUTC(json[start..<end])
            }
            index -= 1
        }
        return nil
    }

    /// The hub's own `received_at` form, `YYYY-MM-DDTHH:MM:SS.sssZ` (`Timestamps.format`), without a formatter.
    static func parseUTC(_ text: ArraySlice<UInt8>) -> Date? {
        let bytes = Array(text)
        guard bytes.count >= 20, bytes.last == UInt8(ascii: "Z") else { return nil }
        func number(_ from: Int, _ count: Int) -> Int? {
            var value = 0
            for byte in bytes[from..<from + count] {
                guard byte >= 48, byte <= 57 else { return nil }
                value = value * 10 + Int(byte - 48)
            }
            return value
        }
        guard let year = number(0, 4), let month = number(5, 2), let day = number(8, 2), let hour = number(11, 2),
            let minute = number(14, 2), let second = number(17, 2)
        else { return nil }
        var fraction = 0.0
        if bytes.count > 21, bytes[19] == UInt8(ascii: "."), let digits = number(20, bytes.count - 21) {
            fraction = Double(digits) / pow(10, Double(bytes.count - 21))
        }
        // Days from the civil date (Howard Hinnant's algorithm).
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        let days = era * 146097 + doe - 719468
        return Date(timeIntervalSince1970: Double(days * 86400 + hour * 3600 + minute * 60 + second) + fraction)
    }
}
