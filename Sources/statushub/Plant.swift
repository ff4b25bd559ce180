import Foundation
import StatusHubCore

/// A simulated plant for `statushub simulate`: lines of machines, operators, materials and work orders, each
/// machine a state machine with dwell times drawn around realistic means, publishing at seed 003 §4.3's rates.
///
/// Time is the plant's own (`now`, in simulated seconds), advanced by the command; `speed` only changes how fast
/// it runs against the wall clock. Every event's `timestamp` is the wall-clock moment it is sent.
struct Plant {
    struct Options {
        var lines = 3
        var machinesPerLine = 8
        var operatorsPerLine = 6
        var workOrdersPerLine = 2
        var silentMachines = 1
        var seed: UInt64 = 3
    }

    enum MachineStatus: String, CaseIterable {
        case running, idle, breakdown, maintenance, offline

        /// Mean dwell in seconds, and where the machine goes next (with weights).
        var dwell: Double {
            switch self {
            case .running: 20 * 60
            case .idle: 4 * 60
            case .breakdown: 12 * 60
            case .maintenance: 25 * 60
            case .offline: 40 * 60
            }
        }

        var next: [(MachineStatus, Double)] {
            switch self {
            case .running: [(.idle, 0.6), (.breakdown, 0.25), (.maintenance, 0.1), (.offline, 0.05)]
            case .idle: [(.running, 0.85), (.maintenance, 0.1), (.offline, 0.05)]
            case .breakdown: [(.maintenance, 0.5), (.running, 0.5)]
            case .maintenance: [(.running, 0.9), (.idle, 0.1)]
            case .offline: [(.idle, 0.5), (.running, 0.5)]
            }
        }
    }

    struct Machine {
        var id: String
        var line: String
        var status: MachineStatus
        var until: Double
        var nextStatusReport: Double
        var nextMetrics: Double
        var nextPrediction: Double
        /// A silent machine stops publishing at this time, so its cached state goes stale.
        var silentFrom: Double?
    }

    struct Operator {
        var id: String
        var line: String
        var status: String
        var until: Double
        /// Seed 003 §4.3 sends operator status on change only (the catalog keeps it until replaced): once at the
        /// start, then at each change.
        var reported = false
    }

    struct WorkOrder {
        var id: String
        var line: String
        var ordered: Int
        var produced: Int
        var status: String
        var nextReport: Double
        /// The machine and operator allocated to it (seed 003 §3.5), announced with its first report and completed with it.
        var machine: String
        var operatorID: String
        var allocated = false
        /// The allocation's id: one allocation per order in this plant.
        var allocationID: String { "AL-\(id)" }
    }

    struct Material {
        var id: String
        var line: String
        var available: Double
        var nextReport: Double
        /// Seed 003 §3.3's planning levels, sent with every report.
        var reorderPoint: Double
        var safetyStock: Double
    }

    private(set) var now: Double = 0
    var machines: [Machine] = []
    var operators: [Operator] = []
    var workOrders: [WorkOrder] = []
    var materials: [Material] = []
    private var rng: SplitMix
    private var lineNames: [String]
    private var nextQuality: [String: Double] = [:]
    private var nextKPI: [String: Double] = [:]
    private var workOrderSerial = 0
    /// Which of a line's machines and operators the next order is allocated to (in turn).
    private var allocationTurn: [String: Int] = [:]
    /// seed 003 §4.3: machine status every 30 s, work-order progress every 30 s, materials every 5 min, predictions
    /// every 2 min; metrics every minute (the catalog's machine-metrics).
    static let statusEvery = 30.0, progressEvery = 30.0, materialEvery = 300.0, predictionEvery = 120.0, metricsEvery = 60.0

    init(_ options: Options) {
        rng = SplitMix(seed: options.seed)
        lineNames = (1...max(1, options.lines)).map { "Line-\($0)" }
        for (lineIndex, line) in lineNames.enumerated() {
            for n in 1...max(1, options.machinesPerLine) {
                let status: MachineStatus = rng.chance(0.8) ? .running : .idle
                machines.append(Machine(
                    id: "M-\(lineIndex + 1)\(String(format: "%02d", n))", line: line, status: status,
                    until: rng.exponential(mean: status.dwell), nextStatusReport: 0, nextMetrics: rng.uniform(0, Self.metricsEvery),
                    nextPrediction: rng.uniform(0, Self.predictionEvery)))
            }
            for n in stride(from: 1, through: options.operatorsPerLine, by: 1) {
                operators.append(Operator(
                    id: "O-\(lineIndex + 1)\(String(format: "%02d", n))", line: line, status: rng.chance(0.7) ? "busy" : "available",
                    until: rng.exponential(mean: 15 * 60)))
            }
            for _ in 0..<max(0, options.workOrdersPerLine) { workOrders.append(newWorkOrder(line: line)) }
            for n in 1...2 {
                materials.append(Material(
                    id: "MAT-\(lineIndex + 1)\(n)", line: line, available: Double(rng.int(400, 2000)), nextReport: rng.uniform(0, 20),
                    reorderPoint: 500, safetyStock: 200))
            }
            nextQuality[line] = rng.exponential(mean: 240)
            nextKPI[line] = rng.uniform(10, 60)
        }
        // The last machines of the plant go quiet after a minute or two: their states expire and go stale.
        for index in machines.indices.suffix(max(0, min(options.silentMachines, machines.count))) {
            machines[index].silentFrom = rng.uniform(60, 120)
        }
    }

    private mutating func newWorkOrder(line: String) -> WorkOrder {
        workOrderSerial += 1
        let turn = allocationTurn[line, default: 0]
        allocationTurn[line] = turn + 1
        let lineMachines = machines.filter { $0.line == line }.map(\.id), lineOperators = operators.filter { $0.line == line }.map(\.id)
        return WorkOrder(
            id: "WO-\(line.split(separator: "-").last ?? "")-\(1000 + workOrderSerial)", line: line, ordered: rng.int(100, 600), produced: 0,
            status: "queued", nextReport: 0,
            machine: lineMachines.isEmpty ? "M-0" : lineMachines[turn % lineMachines.count],
            operatorID: lineOperators.isEmpty ? "O-0" : lineOperators[turn % lineOperators.count])
    }

    /// Advances the plant to `time` (simulated seconds) and returns the events due meanwhile, as JSON objects.
    mutating func advance(to time: Double, wallClock: Date = Date()) -> [String] {
        now = time
        let stamp = Timestamps.format(wallClock)
        var events: [String] = []
        func emit(_ eventType: String, _ entityType: String, _ id: String, line: String?, data: [String: JSONValue], source: String, trigger: String) {
            var object: [String: JSONValue] = [
                "event_type": .string(eventType), "entity_type": .string(entityType), "entity_id": .string(id),
                "timestamp": .string(stamp), "data": .object(data),
                "metadata": .object(["source": .string(source), "triggered_by": .string(trigger)]),
            ]
            if let line { object["line"] = .string(line) }
            var bytes: [UInt8] = []
            JSONValue.object(object).write(into: &bytes)
            events.append(String(decoding: bytes, as: UTF8.self))
        }

        for index in machines.indices {
            var machine = machines[index]
            if let silent = machine.silentFrom, now >= silent { continue }
            var changed = false
            let previous = machine.status
            if now >= machine.until {
                machine.status = rng.pick(machine.status.next)
                machine.until = now + rng.exponential(mean: machine.status.dwell)
                changed = true
            }
            if changed || now >= machine.nextStatusReport {
                var data: [String: JSONValue] = [
                    "current_status": .string(machine.status.rawValue), "previous_status": .string(previous.rawValue),
                ]
                if machine.status == .running { data["oee_percentage"] = .number((rng.uniform(62, 92) * 10).rounded() / 10) }
                emit("resource_status_changed", "machine", machine.id, line: machine.line, data: data, source: "mes", trigger: changed ? "state_change" : "heartbeat")
                machine.nextStatusReport = now + Self.statusEvery
            }
            if changed, machine.status == .breakdown {
                let critical = rng.chance(0.3)
                emit("alert_raised", "machine", machine.id, line: machine.line, data: [
                    "severity": .string(critical ? "critical" : "high"),
                    "message": .string(rng.pick([("spindle overheating", 1), ("hydraulic pressure low", 1), ("axis drive fault", 1), ("coolant flow lost", 1)])),
                ], source: "mes", trigger: "sensor")
            }
            if now >= machine.nextMetrics {
                let running = machine.status == .running
                emit("machine_metrics_reported", "machine", machine.id, line: machine.line, data: [
                    "units_produced": .number(running ? Double(rng.int(8, 20)) : 0),
                    "cycle_time_seconds": .number((rng.uniform(28, 45) * 10).rounded() / 10),
                    "utilization_percentage": .number(running ? (rng.uniform(70, 98) * 10).rounded() / 10 : 0),
                    "temperature_celsius": .number((rng.uniform(35, running ? 80 : 40) * 10).rounded() / 10),
                ], source: "sensors", trigger: "interval")
                machine.nextMetrics = now + Self.metricsEvery
            }
            if now >= machine.nextPrediction {
                emit("idle_time_predicted", "machine", machine.id, line: machine.line, data: [
                    "predicted_idle_minutes": .number(Double(rng.int(0, 45))), "confidence": .number((rng.uniform(0.5, 0.95) * 100).rounded() / 100),
                ], source: "ml", trigger: "interval")
                machine.nextPrediction = now + Self.predictionEvery
            }
            machines[index] = machine
        }

        for index in operators.indices {
            var person = operators[index]
            let previous = person.status
            var changed = false
            if now >= person.until {
                person.status = rng.pick([("available", 0.3), ("busy", 0.55), ("break", 0.15)].filter { $0.0 != person.status })
                person.until = now + rng.exponential(mean: person.status == "break" ? 15 * 60 : 30 * 60)
                changed = true
            }
            if changed || !person.reported {
                emit("resource_status_changed", "operator", person.id, line: person.line, data: [
                    "current_status": .string(person.status), "previous_status": .string(previous),
                ], source: "time_and_attendance", trigger: changed ? "badge" : "shift_start")
                person.reported = true
            }
            operators[index] = person
        }

        for index in workOrders.indices where now >= workOrders[index].nextReport {
            var order = workOrders[index]
            let previous = order.status
            let running = machines.filter { $0.line == order.line && $0.status == .running }.count
            if order.status == "completed" {
                order = newWorkOrder(line: order.line)
            } else {
                if order.status == "queued" { order.status = "in_progress" }
                order.produced = min(order.ordered, order.produced + running * rng.int(1, 4))
                if order.produced >= order.ordered { order.status = "completed" }
            }
            if !order.allocated || order.status == "completed" {
                emit("allocation_changed", "allocation", order.allocationID, line: order.line, data: [
                    "change_type": .string(order.allocated ? "completed" : "created"), "work_order_id": .string(order.id),
                    "machine_id": .string(order.machine), "operator_id": .string(order.operatorID),
                ], source: "mes", trigger: "scheduler")
                order.allocated = true
            }
            emit("work_order_progress", "work_order", order.id, line: order.line, data: [
                "current_status": .string(order.status), "previous_status": .string(previous),
                "quantity_ordered": .number(Double(order.ordered)), "quantity_produced": .number(Double(order.produced)),
            ], source: "mes", trigger: "interval")
            order.nextReport = now + Self.progressEvery
            // A transaction draws material: report it as it happens.
            if let material = materials.firstIndex(where: { $0.line == order.line }), running > 0 {
                materials[material].available = max(0, materials[material].available - Double(running))
                materials[material].nextReport = min(materials[material].nextReport, now)
            }
            workOrders[index] = order
        }

        for index in materials.indices where now >= materials[index].nextReport {
            if materials[index].available < 100 { materials[index].available += 1500 }  // restocked
            emit("material_inventory_changed", "material", materials[index].id, line: materials[index].line, data: [
                "available_quantity": .number(materials[index].available), "on_hand_quantity": .number(materials[index].available + 50),
                "reorder_point": .number(materials[index].reorderPoint), "safety_stock_level": .number(materials[index].safetyStock),
            ], source: "erp", trigger: "transaction")
            materials[index].nextReport = now + Self.materialEvery
        }

        for line in lineNames {
            if now >= nextQuality[line, default: 0] {
                if rng.chance(0.3) {
                    emit("quality_issue_raised", "quality_issue", "QI-\(line)-\(Int(now))", line: line, data: [
                        "batch_id": .string("BATCH-\(Int(now) / 60)"), "severity": .string(rng.pick([("High", 1), ("Medium", 2), ("Low", 2)])),
                        "type": .string(rng.pick([("dimensional", 1), ("surface finish", 1), ("material defect", 1)])),
                        "description": .string("found at final inspection"),
                    ], source: "qms", trigger: "inspection")
                } else {
                    let nominal = 25.0
                    emit("measurement_out_of_tolerance", "part", "P-\(line)-\(Int(now))", line: line, data: [
                        "label": .string("bore diameter"), "measurement_type": .string("NUMERIC"), "nominal": .number(nominal),
                        "lower_tol": .number(0.05), "upper_tol": .number(0.05), "unit": .string("mm"),
                        "value_numeric": .number(((nominal + rng.uniform(0.06, 0.12) * (rng.chance(0.5) ? 1 : -1)) * 1000).rounded() / 1000),
                    ], source: "cmm", trigger: "measurement")
                }
                nextQuality[line] = now + rng.exponential(mean: 300)
            }
            if now >= nextKPI[line, default: 0] {
                let running = Double(machines.filter { $0.line == line && $0.status == .running }.count)
                let total = Double(machines.filter { $0.line == line }.count)
                let oee = (running / max(1, total) * 85 * 10).rounded() / 10
                emit("kpi_calculated", "kpi", "\(line).oee", line: line, data: [
                    "kpi_name": .string("OEE"), "kpi_number": .number(1), "value": .number(oee), "target": .number(75),
                ], source: "kpi-engine", trigger: "interval")
                if oee < 75 {
                    emit("kpi_below_target", "kpi", "\(line).oee", line: line, data: [
                        "kpi_name": .string("OEE"), "kpi_number": .number(1), "value": .number(oee), "target": .number(75),
                    ], source: "kpi-engine", trigger: "threshold")
                }
                nextKPI[line] = now + 300
            }
        }
        return events
    }
}

/// Deterministic randomness for the plant (a seed reproduces a run's sequence of events).
struct SplitMix {
    private var state: UInt64
    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }
    mutating func uniform(_ low: Double, _ high: Double) -> Double { low + (high - low) * unit() }
    mutating func int(_ low: Int, _ high: Int) -> Int { low + Int(next() % UInt64(high - low + 1)) }
    mutating func chance(_ probability: Double) -> Bool { unit() < probability }
    mutating func exponential(mean: Double) -> Double { -mean * log(max(1e-12, 1 - unit())) }

    mutating func pick<T>(_ weighted: [(T, Double)]) -> T {
        var roll = unit() * weighted.reduce(0) { $0 + $1.1 }
        for (value, weight) in weighted {
            roll -= weight
            if roll <= 0 { return value }
        }
        return weighted[weighted.count - 1].0
    }
}
