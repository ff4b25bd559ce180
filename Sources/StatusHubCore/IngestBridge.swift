/// A source of events besides `POST /v1/events` (the MQTT bridge): it runs as a service of the node, beside the
/// engine, and `/ready` reports it. Its events go through the same `EventValidator` and `Engine.append`.
public protocol IngestBridge: Sendable {
    /// Names the bridge in `/ready` and logs (`mqtt`).
    var name: String { get }
    /// nil while the bridge works; otherwise why not ("not connected to the broker: …").
    var problem: String? { get }
    /// Runs until the task is cancelled.
    func run() async throws
}
