import Foundation

/// Which shift is in effect at a moment, from `HubConfig.Shifts`: shift counters are copied under the id of the
/// shift in effect (`<local date it started>.<name>`, e.g. `2026-11-30.B`) and expire when it ends.
public struct ShiftSchedule: Sendable, Equatable {
    public struct Current: Sendable, Equatable {
        public var id: String
        public var endsAt: Date

        public init(id: String, endsAt: Date) {
            self.id = id
            self.endsAt = endsAt
        }
    }

    /// Shifts by their start, in minutes after local midnight.
    let starts: [(minute: Int, name: String)]
    let offsetSeconds: Int

    public static func == (lhs: ShiftSchedule, rhs: ShiftSchedule) -> Bool {
        lhs.starts.map(\.minute) == rhs.starts.map(\.minute) && lhs.starts.map(\.name) == rhs.starts.map(\.name)
            && lhs.offsetSeconds == rhs.offsetSeconds
    }

    init(starts: [(minute: Int, name: String)], offsetSeconds: Int) {
        self.starts = starts
        self.offsetSeconds = offsetSeconds
    }

    public init(_ shifts: HubConfig.Shifts) throws {
        var starts: [(minute: Int, name: String)] = []
        for entry in shifts.schedule {
            let parts = entry.split(separator: " ")
            let clock = parts.count == 2 ? parts[1].split(separator: ":").compactMap { Int($0) } : []
            guard parts.count == 2, ChannelName.isValidSegment(String(parts[0])), clock.count == 2,
                (0...23).contains(clock[0]), (0...59).contains(clock[1])
            else {
                throw ConfigError(description: "config: shifts.schedule entry '\(entry)' must be \"<name> HH:MM\" (the name a channel segment)")
            }
            starts.append((clock[0] * 60 + clock[1], String(parts[0])))
        }
        guard !starts.isEmpty else { throw ConfigError(description: "config: shifts.schedule names no shift") }
        starts.sort { $0.minute < $1.minute }
        for (earlier, later) in zip(starts, starts.dropFirst()) where earlier.minute == later.minute || earlier.name == later.name {
            throw ConfigError(description: "config: shifts.schedule has two shifts named \(earlier.name) or starting at the same time")
        }
        let offset = Array(shifts.utcOffset.utf8)
        guard offset.count == 6, offset[0] == UInt8(ascii: "+") || offset[0] == UInt8(ascii: "-"), offset[3] == UInt8(ascii: ":"),
            let hours = Int(String(shifts.utcOffset.dropFirst().prefix(2))), let minutes = Int(String(shifts.utcOffset.suffix(2))),
            hours <= 23, minutes <= 59
        else { throw ConfigError(description: "config: shifts.utc_offset must be ±HH:MM, got '\(shifts.utcOffset)'") }
        self.starts = starts
        self.offsetSeconds = (hours * 3600 + minutes * 60) * (offset[0] == UInt8(ascii: "-") ? -1 : 1)
    }

    public func current(at date: Date) -> Current {
        let local = Int(date.timeIntervalSince1970.rounded(.down)) + offsetSeconds
        let day = Int((Double(local) / 86_400).rounded(.down))
        let minute = (local - day * 86_400) / 60
        // The latest start at or before now; before the first start of the day, the last shift of yesterday.
        let index = starts.lastIndex { $0.minute <= minute }
        let startDay = index == nil ? day - 1 : day
        let shift = starts[index ?? starts.count - 1]
        let nextIndex = ((index ?? starts.count - 1) + 1) % starts.count
        let endDay = nextIndex == 0 ? startDay + 1 : startDay
        let endLocal = endDay * 86_400 + starts[nextIndex].minute * 60
        let dayText = Timestamps.format(Date(timeIntervalSince1970: Double(startDay * 86_400))).prefix(10)
        return Current(id: "\(dayText).\(shift.name)", endsAt: Date(timeIntervalSince1970: Double(endLocal - offsetSeconds)))
    }
}

extension HubConfig {
    /// The schedule `shifts` describes (checked when the config loads; a config built in code with a bad one
    /// falls back to one shift a day starting at midnight UTC).
    public var shiftSchedule: ShiftSchedule {
        (try? ShiftSchedule(shifts)) ?? ShiftSchedule(starts: [(0, "day")], offsetSeconds: 0)
    }
}
