/// Where a subscriber resumes (`since`, `Last-Event-ID`): after an event id, or, on a hub with several partitions,
/// after a resume token that names a position in each (`r1.<id>.<id>…`, `PartitionPositions`), since ids of
/// different partitions do not order against each other.
public enum ResumePoint: Sendable, Equatable, CustomStringConvertible {
    case event(EventID)
    case token(String)

    /// An event id, or text starting with `r1.` (checked against the hub's partitions when used). Nil otherwise.
    public init?(_ text: some StringProtocol) {
        if text.hasPrefix(PartitionPositions.prefix) {
            self = .token(String(text))
        } else if let id = EventID(text) {
            self = .event(id)
        } else {
            return nil
        }
    }

    public var description: String {
        switch self {
        case .event(let id): id.description
        case .token(let token): token
        }
    }

    /// What a refusal of an unparseable `since` says it must be.
    public static let rule = "an event_id like 1763475825678-0, or a resume token r1.… from a hub with several partitions"
}
