import Foundation
import NIOCore

/// Writes seed-shaped machine `resource_status_changed` events straight into a request body.
///
/// `data` carries what the subscribers look for: `load_run` (this run), `load_seq` (`"<publisher>-<seq>"`),
/// `load_sent_ns` (CLOCK_MONOTONIC at send) and `pad`, which brings `data` to `--payload-bytes` (the minimum,
/// without `pad`, is about 130 bytes; the whole event is about 200 bytes more).
struct EventBuilder {
    static let statuses = ["running", "idle", "maintenance", "breakdown", "offline"]
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
        let status = Self.statuses[seq % Self.statuses.count]
        let previous = Self.statuses[(seq + Self.statuses.count - 1) % Self.statuses.count]
        let start = buffer.writerIndex
        buffer.writeString(
            #"{"event_type":"resource_status_changed","entity_type":"machine","entity_id":"M-\#(machine)","#
                + #""line":"Line-\#(line)","timestamp":"\#(timestamp)","data":"#
        )
        let dataStart = buffer.writerIndex
        buffer.writeString(
            #"{"current_status":"\#(status)","previous_status":"\#(previous)","load_run":"\#(runID)","#
                + #""load_seq":"\#(publisher)-\#(seq)","load_sent_ns":\#(sentNanos)"#
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
