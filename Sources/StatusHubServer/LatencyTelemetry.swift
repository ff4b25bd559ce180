import Foundation
import Prometheus
import StatusHubCore
import Synchronization

/// Latency against the budget of each category (the catalog's `latency_budget_ms`; seed 003 §4.3): what the hub
/// measures itself — ingest (`received_at`) to the moment fan-out queues the event for the sockets, once per event
/// with receivers — and what clients report with `{"op":"report"}` (publish-to-screen as they saw it).
///
/// Both go to Prometheus histograms per category with over-budget counters, and to a ten-minute window of
/// one-minute slots that `GET /v1/slo` answers from.
final class LatencyTelemetry: Sendable {
    static let window = 10  // minutes
    static let defaultBudgetMs = 1000
    static let buckets: [Double] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30]
    /// Samples one report may carry.
    static let maxSamplesPerReport = 1000

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
        let budgetSeconds: Double
        let hubHistogram: ValueHistogram
        let hubOverBudget: Counter
        let clientHistogram: ValueHistogram
        let clientOverBudget: Counter
    }

    /// Budgets in catalog order, for the answer.
    let budgets: [(category: String, milliseconds: Int)]
    private let categories: [String: Category]
    private let slots: Mutex<[String: [Slot]]>
    private let start = ContinuousClock.now

    init(catalog: Catalog, registry: PrometheusCollectorRegistry) {
        var budgets = catalog.categories.map { ($0.name.rawValue, $0.latencyBudgetMs ?? Self.defaultBudgetMs) }
        // Counters are the hub's own events; their category may not be declared in an older catalog.
        if !budgets.contains(where: { $0.0 == "counters" }) { budgets.append(("counters", Self.defaultBudgetMs)) }
        self.budgets = budgets
        var categories: [String: Category] = [:]
        for (name, budget) in budgets {
            let labels = [("category", name)]
            categories[name] = Category(
                budgetSeconds: Double(budget) / 1000,
                hubHistogram: registry.makeValueHistogram(
                    descriptor: .init(namespace: "statushub", metricName: "delivery_latency", unitName: "seconds",
                        helpText: "Ingest (received_at) to queued for the subscribers' sockets, per event, by category"),
                    labels: labels, buckets: Self.buckets),
                hubOverBudget: registry.makeCounter(
                    descriptor: .init(namespace: "statushub", metricName: "deliveries_over_budget", unitName: "total",
                        helpText: "Events whose ingest-to-fan-out time passed their category's latency_budget_ms"),
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
        self.categories = categories
        slots = Mutex(Dictionary(uniqueKeysWithValues: budgets.map { ($0.0, Array(repeating: Slot(), count: Self.window)) }))
    }

    func knows(category: String) -> Bool { categories[category] != nil }

    /// Fan-out's measurement of one event: now minus its `received_at`.
    func observe(_ event: StoredEvent, now: Date = Date()) {
        guard let channel = event.channels.first, let receivedAt = Self.receivedAt(in: event.json) else { return }
        // A tenant's channels carry its `@tenant:` prefix; the category is the part after it.
        let category = channel.hasPrefix("@") ? String(channel.drop { $0 != ":" }.dropFirst()) : channel
        record(category: category, seconds: max(0, now.timeIntervalSince(receivedAt)), fromClient: false)
    }

    /// A client's report: milliseconds per category. Returns how many samples were taken.
    func report(_ samples: [String: [Double]]) -> Int {
        var taken = 0
        for (category, values) in samples {
            for value in values where taken < Self.maxSamplesPerReport {
                record(category: category, seconds: value / 1000, fromClient: true)
                taken += 1
            }
        }
        return taken
    }

    private func record(category name: String, seconds: Double, fromClient: Bool) {
        guard let category = categories[name] else { return }
        let within = seconds <= category.budgetSeconds
        if fromClient {
            category.clientHistogram.record(seconds)
            if !within { category.clientOverBudget.increment() }
        } else {
            category.hubHistogram.record(seconds)
            if !within { category.hubOverBudget.increment() }
        }
        let minute = currentMinute
        slots.withLock { slots in
            guard var ring = slots[name] else { return }
            let index = minute % Self.window
            if ring[index].minute != minute { ring[index] = Slot(minute: minute) }
            if fromClient {
                ring[index].clients.count += 1
                if within { ring[index].clients.withinBudget += 1 }
            } else {
                ring[index].hub.count += 1
                if within { ring[index].hub.withinBudget += 1 }
            }
            slots[name] = ring
        }
    }

    private var currentMinute: Int { Int(start.duration(to: .now).components.seconds / 60) }

    /// `GET /v1/slo`: per category, its budget and the last ten minutes' figures, measured by the hub and reported
    /// by clients.
    func sloJSON() -> JSONValue {
        let minute = currentMinute
        let rings = slots.withLock { $0 }
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
            "categories": .array(budgets.map { name, budget in
                let ring = rings[name] ?? []
                return .object([
                    "category": .string(name), "budget_ms": .number(Double(budget)),
                    "hub": figures(\.hub, ring), "clients": figures(\.clients, ring),
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
