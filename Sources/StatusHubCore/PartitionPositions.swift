
/// An event id that names its partition, `3:1763475825678-0`: with several partitions each has its own history
/// stream and ids, and an id alone does not say which stream it is from. One partition keeps plain ids.
public struct PartitionedEventID: Sendable, Hashable, CustomStringConvertible {
    public var partition: Int
    public var id: EventID

    public init(partition: Int, id: EventID) {
        self.partition = partition
        self.id = id
    }

    public init?(_ text: some StringProtocol) {
        guard let colon = text.firstIndex(of: ":"), let partition = Int(text[..<colon]), partition >= 0,
            let id = EventID(text[text.index(after: colon)...])
        else { return nil }
        self.init(partition: partition, id: id)
    }

    public var description: String { "\(partition):\(id)" }
}

/// Where a subscriber stands in every partition: the resume token of a partitioned hub, `r1.<id>.<id>…` with one
/// stream id per partition in partition order (`0-0` for one it has nothing from). Ids of different partitions
/// do not order against each other (each Redis has its own clock), so resuming needs all of them: everything
/// after each partition's position is what was missed, with no gap and no duplicate.
public struct PartitionPositions: Sendable, Equatable, CustomStringConvertible {
    public static let prefix = "r1."

    public private(set) var positions: [EventID]

    /// Nothing seen in any of `count` partitions.
    public init(count: Int) { positions = Array(repeating: .zero, count: count) }

    /// These positions, partition by partition.
    public init(_ positions: [EventID]) { self.positions = positions }

    /// - Throws: a reason fit for a client (`since` is refused naming it) when the token is malformed or was made
    ///   for another number of partitions.
    public init(parsing text: some StringProtocol, partitions: Int) throws(PositionError) {
        guard text.hasPrefix(Self.prefix) else { throw PositionError("a resume token starts with \(Self.prefix)") }
        let parts = text.dropFirst(Self.prefix.count).split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == partitions else {
            throw PositionError("the token names \(parts.count) partitions and the hub has \(partitions); resync from a snapshot")
        }
        var positions: [EventID] = []
        for (partition, part) in parts.enumerated() {
            guard let id = EventID(part) else { throw PositionError("partition \(partition): '\(part)' is not an event id") }
            positions.append(id)
        }
        self.positions = positions
    }

    /// After delivering `event`: its partition's position moves up to it (never back).
    public mutating func advance(past event: PartitionedEventID) {
        guard positions.indices.contains(event.partition) else { return }
        positions[event.partition] = max(positions[event.partition], event.id)
    }

    /// Whether `event` is at or before this position (already delivered).
    public func covers(_ event: PartitionedEventID) -> Bool {
        positions.indices.contains(event.partition) && event.id <= positions[event.partition]
    }

    public var description: String { Self.prefix + positions.map(\.description).joined(separator: ".") }

    public struct PositionError: Error, Sendable, Equatable, CustomStringConvertible {
        public var description: String
        init(_ description: String) { self.description = description }
    }
}
