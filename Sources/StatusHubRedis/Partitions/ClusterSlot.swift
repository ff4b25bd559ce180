/// Redis Cluster's key → hash slot function: CRC16 (XMODEM) of the key, or of its hash tag, modulo 16384
/// (the cluster specification, "Keys distribution model"). Written out here because no library in the package
/// graph speaks Cluster; the specification's own test vector (`123456789` → 0x31C3) is checked by the tests.
public enum ClusterSlot {
    public static let count = 16_384

    /// The slot of `key`: keys that share a hash tag (`{p3}…`) share a slot, so one script may touch them all.
    public static func of(key: some StringProtocol) -> Int {
        Int(crc16(hashTag(of: Array(key.utf8))) % UInt16(count))
    }

    /// The part of the key that is hashed: what is between the first `{` and the next `}`, if that is not empty;
    /// otherwise the whole key.
    static func hashTag(of key: [UInt8]) -> ArraySlice<UInt8> {
        guard let open = key.firstIndex(of: UInt8(ascii: "{")),
            let close = key[(open + 1)...].firstIndex(of: UInt8(ascii: "}")), close > open + 1
        else { return key[...] }
        return key[(open + 1)..<close]
    }

    /// CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0.
    static func crc16(_ bytes: ArraySlice<UInt8>) -> UInt16 {
        var crc: UInt16 = 0
        for byte in bytes {
            crc ^= UInt16(byte) << 8
            for _ in 0..<8 { crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1 }
        }
        return crc
    }
}

/// Which node serves which hash slots, as `CLUSTER SLOTS` reports it.
public struct ClusterSlotMap: Sendable, Equatable {
    public struct Range: Sendable, Equatable {
        public var slots: ClosedRange<Int>
        /// The master serving them (host and port; user, password and database come from the seed URL).
        public var master: RedisURL
    }

    public private(set) var ranges: [Range]

    public init(ranges: [Range]) { self.ranges = ranges.sorted { $0.slots.lowerBound < $1.slots.lowerBound } }

    /// Parses a `CLUSTER SLOTS` reply: `[[start, end, [host, port, id…], replicas…]…]`. An empty host (a node that
    /// announces none) means the node that was asked.
    public init(clusterSlots reply: RedisReply, askedNode: RedisURL) throws(RedisError) {
        guard case .array(let entries) = reply else { throw .unexpectedReply("CLUSTER SLOTS answered \(reply)") }
        var ranges: [Range] = []
        for entry in entries {
            guard case .array(let parts) = entry, parts.count >= 3, let start = parts[0].integer, let end = parts[1].integer,
                case .array(let master) = parts[2], master.count >= 2, let host = master[0].text, let port = master[1].integer,
                start <= end, start >= 0, end < ClusterSlot.count
            else { throw .unexpectedReply("CLUSTER SLOTS entry \(entry)") }
            var url = askedNode
            if !host.isEmpty, host != "?" { url.host = host }
            url.port = Int(port)
            ranges.append(Range(slots: Int(start)...Int(end), master: url))
        }
        self.init(ranges: ranges)
    }

    /// The master serving `slot`, or nil while no node does (the cluster is down or being resharded).
    public func master(forSlot slot: Int) -> RedisURL? {
        // Few ranges (one or a few per master): a binary search is not worth its code.
        ranges.first { $0.slots.contains(slot) }?.master
    }

    /// Every master, once, in slot order.
    public var masters: [RedisURL] {
        var seen = Set<RedisURL>()
        return ranges.map(\.master).filter { seen.insert($0).inserted }
    }

    /// Whether every slot is served.
    public var coversEverySlot: Bool {
        var next = 0
        for range in ranges {
            guard range.slots.lowerBound == next else { return false }
            next = range.slots.upperBound + 1
        }
        return next == ClusterSlot.count
    }

    /// The map after a `MOVED`: `slot` is served by `master` now (the rest of the map is refreshed separately).
    public mutating func assign(slot: Int, to master: RedisURL) {
        var updated: [Range] = []
        for range in ranges {
            guard range.slots.contains(slot) else {
                updated.append(range)
                continue
            }
            if range.slots.lowerBound < slot { updated.append(Range(slots: range.slots.lowerBound...(slot - 1), master: range.master)) }
            if slot < range.slots.upperBound { updated.append(Range(slots: (slot + 1)...range.slots.upperBound, master: range.master)) }
        }
        updated.append(Range(slots: slot...slot, master: master))
        self = ClusterSlotMap(ranges: updated)
    }
}

/// A cluster node's answer that the key lives elsewhere.
public enum ClusterRedirect: Sendable, Equatable {
    /// `MOVED <slot> <host>:<port>`: the slot belongs to that node for good; the map is out of date.
    case moved(slot: Int, host: String, port: Int)
    /// `ASK <slot> <host>:<port>`: the slot is being migrated and this key is already there; ask that node once,
    /// preceded by `ASKING`, and keep the map as it is.
    case ask(slot: Int, host: String, port: Int)

    public init?(errorMessage message: String) {
        let words = message.split(separator: " ")
        guard words.count == 3, let slot = Int(words[1]), let colon = words[2].lastIndex(of: ":"),
            let port = Int(words[2][words[2].index(after: colon)...])
        else { return nil }
        let host = String(words[2][..<colon])
        switch words[0] {
        case "MOVED": self = .moved(slot: slot, host: host, port: port)
        case "ASK": self = .ask(slot: slot, host: host, port: port)
        default: return nil
        }
    }
}
