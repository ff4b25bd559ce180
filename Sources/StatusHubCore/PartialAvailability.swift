/// An engine that can serve in part: with partitions on several Redis servers, one server down leaves the others'
/// entities served. `/ready` stays 200 then (a load balancer taking every node out over one shard would stop them
/// all) and names what is missing under `degraded`, as it does for a bridge that lost its broker.
public protocol PartialAvailability: Sendable {
    /// Nil when every part accepts events; otherwise which do not, said for an operator.
    var unavailableParts: String? { get }

    /// Nil when every part can be read; otherwise the parts not connected, said for the reader of a response that
    /// spans them all (`GET /v1/state?pattern=`), which is refused before its status rather than cut off midway.
    var unreadableParts: String? { get }
}
