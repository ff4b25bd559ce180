import ArgumentParser
import Foundation
import NIOCore

/// Writes seed-shaped events straight into a request body: machine `resource_status_changed` events, or with
/// `--mix plant` what a plant sends (`PlantMix`).
///
/// `data` carries what the subscribers look for: `load_run` (this run), `load_seq` (`"<publisher>-<seq>"`),
/// `load_sent_ns` (CLOCK_MONOTONIC at send) and `pad`, which brings `data` to `--payload-bytes` (the minimum,
/// without `pad`, is about 130 bytes; the whole event is about 200 bytes more).
struct EventBuilder {
    static let suffix = #"},"metadata":{"source":"statushub-load","triggered_by":"load-test"}}"#
    static let padOverhead = #","pad":"""#.utf8.count

    let runID: String
    let publisher: Int
    let config: LoadConfig
    private var cachedSecond = -1
    private var cachedPrefix = ""

    init(runID: String, publisher: Int, config: LoadConfig) {
        self.runID = runID
        self.publisher = publisher
        self.config = config
    }

    /// `2025-11-18T14:23:45.678Z`, from the wall clock (the hub only validates it).
    mutating func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        if now.tv_sec != cachedSecond {
            var seconds = now.tv_sec
            var parts = tm()
            gmtime_r(&seconds, &parts)
            cachedPrefix = String(
                format: "%04d-%02d-%02dT%02d:%02d:%02d", parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday,
                parts.tm_hour, parts.tm_min, parts.tm_sec
            )
            cachedSecond = now.tv_sec
        }
        let millis = now.tv_nsec / 1_000_000
        let ms = millis < 10 ? "00\(millis)" : millis < 100 ? "0\(millis)" : "\(millis)"
        return "\(cachedPrefix).\(ms)Z"
    }

    /// Writes one event; returns its size in bytes. `--payload-bytes` is the size of its `data` object.
    @discardableResult
    func write(seq: Int, sentNanos: UInt64, timestamp: String, into buffer: inout ByteBuffer) -> Int {
        let machine = config.machineIndex(publisher: publisher, seq: seq)
        let line = machine % config.lineCount
        let kind: PlantMix = switch config.mix {
        case .plant: PlantMix.kind(of: seq)
        case .alerts: .alert
        case .machineStatus: .machineStatus
        case .operatorStatus: .operatorStatus
        }
        var (eventType, entityType, entityID, fields) = kind.parts(unit: machine, seq: seq)
        // The operator's name: a field the catalog restricts (pii), so readers without the claim get another frame.
        if config.mix == .operatorStatus { fields += #","name":"Operator \#(machine)""# }
        let start = buffer.writerIndex
        buffer.writeString(
            #"{"event_type":"\#(eventType)","entity_type":"\#(entityType)","entity_id":"\#(entityID)","#
                + #""line":"Line-\#(line)","timestamp":"\#(timestamp)","data":"#
        )
        let dataStart = buffer.writerIndex
        buffer.writeString(
            #"{\#(fields),"load_run":"\#(runID)","load_seq":"\#(publisher)-\#(seq)","load_sent_ns":\#(sentNanos)"#
        )
        let pad = config.payloadBytes - (buffer.writerIndex - dataStart) - Self.padOverhead - 1
        if pad > 0 {
            buffer.writeString(#","pad":""#)
            buffer.writeRepeatingByte(UInt8(ascii: "x"), count: pad)
            buffer.writeString(#"""#)
        }
        buffer.writeString(Self.suffix)
        return buffer.writerIndex - start
    }
}

/// `--mix`: what the publishers send.
enum EventMix: String, ExpressibleByArgument, Sendable {
    /// Machine `resource_status_changed` only (every scenario before `plant`).
    case machineStatus = "machine-status"
    /// Operator `resource_status_changed` with the operator's `name`, which the catalog restricts (`pii`): with
    /// subscribers in two roles (`--token`), fan-out encodes two frames per event.
    case operatorStatus = "operator-status"
    /// A plant's traffic: mostly machine status, then operators, work orders, material, alerts and allocations
    /// (`PlantMix`), all on the line of the unit they concern.
    case plant
    /// Machine `alert_raised` only: news that replaces no state, so the engine stores and publishes it and nothing
    /// more (no cache key, deadline, shadow or counter) — ingest with the state machinery out of the way.
    case alerts
}

/// The plant mix, out of every 20 events: 11 machine status changes, 3 operator status changes, 3 work-order
/// progress updates, 1 material inventory change, 1 alert, 1 allocation change — each with the `data` fields the
/// hub's validation asks of its type (seed 003 §3, §9.1), so every one is accepted.
enum PlantMix {
    case machineStatus, operatorStatus, workOrderProgress, materialInventory, alert, allocation

    static func kind(of seq: Int) -> PlantMix {
        switch seq % 20 {
        case 0..<11: .machineStatus
        case 11..<14: .operatorStatus
        case 14..<17: .workOrderProgress
        case 17: .materialInventory
        case 18: .alert
        default: .allocation
        }
    }

    static let machineStatuses = ["running", "idle", "maintenance", "breakdown", "offline"]
    static let operatorStatuses = ["available", "busy", "break", "absent", "offline"]
    static let workOrderStatuses = ["queued", "assigned", "in_progress", "paused", "completed"]

    /// Event type, entity type, entity id and the type's `data` fields (a JSON object's members) for unit `unit`
    /// (the machine index, which also picks the line).
    func parts(unit: Int, seq: Int) -> (eventType: String, entityType: String, entityID: String, fields: String) {
        func cycle(_ values: [String]) -> (String, String) {
            (values[seq % values.count], values[(seq + values.count - 1) % values.count])
        }
        switch self {
        case .machineStatus:
            let (status, previous) = cycle(Self.machineStatuses)
            return ("resource_status_changed", "machine", "M-\(unit)",
                #""current_status":"\#(status)","previous_status":"\#(previous)""#)
        case .operatorStatus:
            let (status, previous) = cycle(Self.operatorStatuses)
            return ("resource_status_changed", "operator", "OP-\(unit)",
                #""current_status":"\#(status)","previous_status":"\#(previous)","efficiency_rating":4.2"#)
        case .workOrderProgress:
            let (status, previous) = cycle(Self.workOrderStatuses)
            return ("work_order_progress", "work_order", "WO-\(unit)",
                #""current_status":"\#(status)","previous_status":"\#(previous)","quantity_produced":\#(seq % 500),"quantity_ordered":500"#)
        case .materialInventory:
            return ("material_inventory_changed", "material", "MAT-\(unit)",
                #""available_quantity":\#(1000 - seq % 1000),"on_hand_quantity":1000,"allocated_quantity":\#(seq % 1000)"#)
        case .alert:
            return ("alert_raised", "machine", "M-\(unit)", #""severity":"high","message":"spindle temperature above limit""#)
        case .allocation:
            return ("allocation_changed", "allocation", "AL-\(unit)",
                #""change_type":"reassigned","operator_id":"OP-\#(unit)","machine_id":"M-\#(unit)""#)
        }
    }
}
