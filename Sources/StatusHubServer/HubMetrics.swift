import Prometheus

/// What operators watch, exposed at `GET /metrics` in Prometheus text format.
/// A registry per hub (not the process-global `MetricsSystem`) so several hubs in one test process stay apart.
public final class HubMetrics: Sendable {
    /// Public so a bridge (MQTT) counts into the same `GET /metrics`.
    public let registry = PrometheusCollectorRegistry()
    let eventsAccepted: Counter
    let eventsRejected: Counter
    let ingestUnavailable: Counter
    let eventsFannedOut: Counter
    let deliveries: Counter
    let connections: Gauge
    let sseConnections: Gauge
    let connectionsLimit: Gauge
    let tcpConnections: Gauge
    let tcpConnectionsLimit: Gauge
    let slowConsumerCloses: Counter
    let duplicatesAcknowledged: Counter
    let conflated: Counter
    let resyncs: Counter
    let messagesDeflated: Counter
    /// `POST /v1/events` by the request path that served it: below Hummingbird (`IngestHandler`) or its router (a
    /// request behind one Hummingbird was still answering on the same connection).
    let ingestRequestsByHandler: Counter
    let ingestRequestsByRouter: Counter

    public init() {
        let registry = self.registry
        func counter(_ name: String, _ help: String) -> Counter {
            registry.makeCounter(descriptor: .init(namespace: "statushub", metricName: name, unitName: "total", helpText: help))
        }
        eventsAccepted = counter("events_accepted", "Events acknowledged by ingest")
        eventsRejected = counter("events_rejected", "Events refused by validation")
        ingestUnavailable = counter("ingest_unavailable", "Ingest requests answered 503 because the engine was down")
        eventsFannedOut = counter("events_fanned_out", "Events this node received from the engine")
        deliveries = counter("deliveries", "Event frames queued to WebSocket connections")
        duplicatesAcknowledged = counter("duplicates_acknowledged", "Retried events acknowledged with their original id, not stored again")
        conflated = counter("conflated", "Queued state events replaced by a newer one for the same entity (slow readers)")
        messagesDeflated = counter(
            "websocket_messages_deflated",
            "Outgoing WebSocket messages compressed for permessage-deflate: once per message and server window size, shared by every compressed connection")
        func ingestRequests(servedBy: String) -> Counter {
            registry.makeCounter(
                descriptor: .init(namespace: "statushub", metricName: "ingest_requests", unitName: "total",
                    helpText: "POST /v1/events requests by the request path that served them (handler: below the router)"),
                labels: [("served_by", servedBy)])
        }
        ingestRequestsByHandler = ingestRequests(servedBy: "handler")
        ingestRequestsByRouter = ingestRequests(servedBy: "router")
        resyncs = counter("resyncs", "resync messages sent (history gap on resume, or an engine gap)")
        slowConsumerCloses = counter("slow_consumer_closes", "Connections closed with 4001 because their outbox overflowed")
        connections = registry.makeGauge(
            descriptor: .init(namespace: "statushub", metricName: "websocket_connections", unitName: "", helpText: "Open WebSocket connections"))
        sseConnections = registry.makeGauge(
            descriptor: .init(namespace: "statushub", metricName: "sse_connections", unitName: "", helpText: "Open Server-Sent Events streams (GET /v1/sse)"))
        tcpConnections = registry.makeGauge(
            descriptor: .init(
                namespace: "statushub", metricName: "tcp_connections", unitName: "",
                helpText: "Open connections of every kind (WebSocket, SSE, HTTP, not yet upgraded): what the node holds below its open-files limit (AcceptCeiling)"))
        tcpConnectionsLimit = registry.makeGauge(
            descriptor: .init(
                namespace: "statushub", metricName: "tcp_connections_limit", unitName: "",
                helpText: "Connections of every kind the node holds before it stops accepting: the open-files limit less what it keeps for itself"))
        connectionsLimit = registry.makeGauge(
            descriptor: .init(
                namespace: "statushub", metricName: "connections_limit", unitName: "",
                helpText: "WebSockets and SSE streams the node takes before refusing with 4503/503: server.max_connections, or less when the open-files limit leaves less room"))
    }

    public func prometheusText() -> [UInt8] {
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        return buffer
    }
}
