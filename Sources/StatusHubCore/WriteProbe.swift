/// An engine that can be connected and still refuse every write: a Redis at `maxmemory` with `noeviction`, or a
/// read-only replica. `/ready` asks it, so that a load balancer stops sending events to a node whose every ingest
/// would be 503.
///
/// A protocol beside `Engine` rather than a requirement of it: the memory engine has nothing to probe.
public protocol WriteProbe: Sendable {
    /// Nil when a write would be accepted now; otherwise what refuses it, said for an operator.
    func writeRefusal() async -> String?
}
