import Foundation

/// What a writer needs to time one delivery against its budget (`LatencyTelemetry`): the event's ingest instant and
/// its category. Fan-out works it out once per event and it travels with the frame (`Connection.Held`, the outbox)
/// to every receiver's writer; replies, replays and snapshots carry none and are not timed.
struct DeliveryStamp: Sendable, Equatable {
    /// The event's `received_at`, in seconds since 1970.
    var ingest: Double
    /// The category's place in `LatencyTelemetry.budgets`.
    var category: UInt16
}

/// One writer's deliveries, timed as they are handed to the socket, until it hands them to `LatencyTelemetry`
/// (`commit`): per category, a count per histogram bucket, their sum, and how many passed the budget.
///
/// It belongs to one writer at a time (an event loop's flush passes, or a connection's writer task), so timing a
/// delivery takes no lock; the shared figures are locked once per commit — once per loop batch, however many frames
/// and connections it wrote — instead of once per frame.
struct DeliveryTally: Sendable {
    let telemetry: LatencyTelemetry
    private let bounds: [Double]
    private let budgets: [Double]
    /// `category * (bounds.count + 1) + bucket`: deliveries at or under each bound and above the one before, the last
    /// slot above every bound (not cumulative). Empty until the first delivery.
    private(set) var counts: [Int] = []
    private(set) var sums: [Double] = []
    private(set) var overBudget: [Int] = []
    private(set) var isEmpty = true
    /// The current write's clock reading, taken at its first delivery: one reading per write however many frames
    /// it carries.
    private var now: Double?

    init(for telemetry: LatencyTelemetry) {
        self.telemetry = telemetry
        bounds = LatencyTelemetry.buckets
        budgets = telemetry.budgetSeconds
    }

    var slotsPerCategory: Int { bounds.count + 1 }

    /// A new write: its deliveries are timed at a fresh clock reading.
    mutating func beginWrite() { now = nil }

    /// One delivery of the current write.
    mutating func add(_ stamp: DeliveryStamp) {
        let category = Int(stamp.category)
        guard category < budgets.count else { return }
        if counts.isEmpty {
            counts = Array(repeating: 0, count: budgets.count * slotsPerCategory)
            sums = Array(repeating: 0, count: budgets.count)
            overBudget = Array(repeating: 0, count: budgets.count)
        }
        let now = self.now ?? Date().timeIntervalSince1970
        self.now = now
        let seconds = max(0, now - stamp.ingest)
        var bucket = 0
        while bucket < bounds.count, seconds > bounds[bucket] { bucket += 1 }
        counts[category * slotsPerCategory + bucket] += 1
        sums[category] += seconds
        if seconds > budgets[category] { overBudget[category] += 1 }
        isEmpty = false
    }

    /// Hands what was timed since the last commit to the telemetry, and starts over.
    mutating func commit() {
        guard !isEmpty else { return }
        telemetry.record(self)
        for index in counts.indices { counts[index] = 0 }
        for index in sums.indices {
            sums[index] = 0
            overBudget[index] = 0
        }
        isEmpty = true
    }

    /// A writer task's batch, handed to its writer just now: timed and committed at once.
    mutating func commit(written stamps: [DeliveryStamp]) {
        guard !stamps.isEmpty else { return }
        beginWrite()
        for stamp in stamps { add(stamp) }
        commit()
    }
}
