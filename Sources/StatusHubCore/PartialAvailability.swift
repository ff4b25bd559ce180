/// An engine that can serve in part: with partitions on several Redis servers, one server down leaves the others'
/// entities served. `/ready` stays 200 then (a load balancer taking every node out over one shard would stop them
/// all) and names what is missing under `degraded`, as it does for a bridge that lost its broker.
public protocol PartialAvailability: Sendable {
    /// Nil when every part accepts events; otherwise which do not, said for an operator.
    var unavailableParts: String? { get }
}
