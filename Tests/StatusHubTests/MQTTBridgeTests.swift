import Foundation
import StatusHubCore
import StatusHubMQTT
import StatusHubServer
import Testing

/// The MQTT bridge against a real mosquitto on a loopback port: plain JSON topics mapped by config, and a
/// Sparkplug B edge node driven by the test (`SparkplugEdgeNode`, over the same libmosquitto).
@Suite("MQTT bridge", .serialized)
struct MQTTBridgeTests {
    static func plainTopics(_ config: inout HubConfig, broker: MosquittoBroker, shareGroup: String = "statushub") {
        config.mqtt.url = broker.url
        config.mqtt.clientId = "hub-\(UUID().uuidString.prefix(8))"
        config.mqtt.reconnectMaxSeconds = 1
        config.mqtt.shareGroup = shareGroup
        var mapping = HubConfig.TopicMapping(
            topic: "plant/{site}/{area}/{line}/{cell}/{machine}/status", eventType: "resource_status_changed",
            entityType: "machine", entityId: "{machine}", line: "{line}")
        mapping.fields = ["state": "current_status"]
        mapping.values = ["current_status": ["RUN": "running", "STOP": "idle", "FAULT": "breakdown"]]
        config.mqtt.topics = [mapping]
    }

    static func sparkplug(_ config: inout HubConfig, broker: MosquittoBroker, reorderTimeoutMs: Int = 2000) {
        config.mqtt.url = broker.url
        config.mqtt.clientId = "hub-\(UUID().uuidString.prefix(8))"
        config.mqtt.reconnectMaxSeconds = 1
        var sparkplug = HubConfig.Sparkplug()
        sparkplug.hostId = "statushub-test"
        sparkplug.reorderTimeoutMs = reorderTimeoutMs
        config.mqtt.sparkplug = sparkplug
    }

    /// A publisher that waits until it is connected.
    static func publisher(_ broker: MosquittoBroker) async throws -> MosquittoClient {
        // A client whose first connect got nowhere is replaced (seen once under a fully loaded suite: no CONNACK
        // within 30 s), with what it and the broker said printed for the record.
        for attempt in 1...3 {
            let client = try broker.client()
            await client.start()
            do {
                try await eventually("publisher connected", timeout: .seconds(10)) { client.isConnected }
                return client
            } catch where attempt < 3 {
                let log = (try? String(contentsOf: broker.directory.appendingPathComponent("mosquitto.log"), encoding: .utf8)) ?? ""
                print("MQTT test publisher attempt \(attempt) not connected: \(client.lastError ?? "no error"); broker log: \(log.suffix(2000))")
                await client.stop()
            }
        }
        throw EventuallyTimeout(description: "no publisher connected in 3 attempts")
    }

    static func statusMessage(_ machine: String, _ state: String, line: String = "Line-2", at date: Date = Date()) -> MQTTMessage {
        let timestamp = date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
        return MQTTMessage(
            topic: "plant/S1/A1/\(line)/C3/\(machine)/status", payload: Array(#"{"state":"\#(state)","timestamp":"\#(timestamp)"}"#.utf8))
    }

    static func counter(_ name: String, port: Int) async throws -> Double {
        let text = try await HTTP.get(port: port, "/metrics").text
        for line in text.split(separator: "\n") where line.hasPrefix("statushub_mqtt_\(name)_total ") {
            return Double(line.split(separator: " ").last ?? "") ?? 0
        }
        return 0
    }

    @Test("a plain JSON topic becomes the machine's status on a dashboard; payloads that fail are counted and skipped", arguments: EngineKind.allCases)
    func plainTopic(engine: EngineKind) async throws {
        try await withMosquitto { broker in
            try await withHub(engine: engine, configure: { Self.plainTopics(&$0, broker: broker) }) { hub in
                let socket = try await TestSocket(port: hub.port)
                try await socket.subscribe(["line:Line-2:*"])
                let publisher = try await Self.publisher(broker)
                defer { Task { await publisher.stop() } }

                try publisher.publish(Self.statusMessage("M-203", "RUN"))
                let event = try await Self.nextStatus(socket, nil)
                #expect(event["entity_id"] == .string("M-203"))
                #expect(event["line"] == .string("Line-2"))
                #expect(event["data"]?["current_status"] == .string("running"))
                #expect(event["metadata"]?["source"] == .string("mqtt"))

                // Not JSON, a status the catalog does not know, a topic level too many: counted, logged, skipped.
                try publisher.publish(MQTTMessage(topic: "plant/S1/A1/Line-2/C3/M-203/status", payload: Array("RUN".utf8)))
                try publisher.publish(Self.statusMessage("M-203", "EXPLODED"))
                try publisher.publish(MQTTMessage(topic: "plant/S1/A1/Line-2/C3/M-203/status", payload: Array(#"{"state":"RUN","timestamp":7}"#.utf8)))
                try publisher.publish(Self.statusMessage("M-204", "FAULT"))
                let next = try await Self.nextStatus(socket, nil)
                #expect(next["entity_id"] == .string("M-204"))
                #expect(next["data"]?["current_status"] == .string("breakdown"))
                #expect(try await Self.counter("messages_refused", port: hub.port) == 3)
                #expect(try await Self.counter("messages_received", port: hub.port) == 5)
                #expect(try await Self.counter("events_mapped", port: hub.port) == 2)

                let state = try await HTTP.get(port: hub.port, "/v1/state/machine/M-203")
                #expect(state.json["data"]?["current_status"] == .string("running"))
                let ready = try await HTTP.get(port: hub.port, "/ready")
                #expect(ready.status == 200 && ready.json["degraded"] == nil)
            }
        }
    }

    /// Plain topics over TLS: the broker verified by `ca`, and `client` presented when given.
    static func tlsTopics(_ config: inout HubConfig, broker: MosquittoBroker, ca: ThrowawayCertificate, client: ThrowawayCertificate? = nil) {
        plainTopics(&config, broker: broker)
        config.mqtt.tlsCaFile = ca.certificateFile
        config.mqtt.tlsCertificateFile = client?.certificateFile
        config.mqtt.tlsPrivateKeyFile = client?.privateKeyFile
    }

    /// A status published on the broker reaches a dashboard of `hub`, mapped.
    static func statusReachesADashboard(hub: RunningHub, broker: MosquittoBroker, machine: String, state: String) async throws -> JSONValue? {
        let socket = try await TestSocket(port: hub.port)
        try await socket.subscribe(["line:Line-2:*"])
        let publisher = try await Self.publisher(broker)
        defer { Task { await publisher.stop() } }
        try publisher.publish(Self.statusMessage(machine, state))
        return try await Self.nextStatus(socket, machine)["data"]?["current_status"]
    }

    /// The reason `/ready` gives for a bridge that is not connected, once it names the cause (`… at host:port: cause`).
    /// Until the first attempt has failed the reason is only "not connected to the broker at host:port": a CI run
    /// read it then and missed the cause a test checks for.
    static func notConnectedReason(hub: RunningHub) async throws -> String {
        var reason = ""
        try await eventually("/ready names the bridge and why", timeout: .seconds(15)) {
            let ready = try await HTTP.get(port: hub.port, "/ready")
            reason = ready.json["degraded"]?.arrayValue?.first?["reason"]?.stringValue ?? ""
            return ready.status == 200 && reason.contains("not connected") && reason.contains(": ")
        }
        return reason
    }

    @Test("over TLS (mqtts://): the bridge verifies the broker with tls_ca_file and maps as over TCP; a broker it cannot verify is never trusted, and /ready says why")
    func tlsBroker() async throws {
        let certificate = try ThrowawayCertificate()
        let stranger = try ThrowawayCertificate()
        defer {
            certificate.remove()
            stranger.remove()
        }
        try await withMosquitto(tls: certificate) { broker in
            try await withHub(engine: .memory, configure: { Self.tlsTopics(&$0, broker: broker, ca: certificate) }) { hub in
                let status = try await Self.statusReachesADashboard(hub: hub, broker: broker, machine: "M-205", state: "FAULT")
                #expect(status == .string("breakdown"))
                #expect(try await HTTP.get(port: hub.port, "/ready").json["degraded"] == nil)
            }
            // Trusting another CA: the handshake fails, nothing is subscribed, and /ready names the bridge.
            try await withHub(redisURL: nil, configure: { Self.tlsTopics(&$0, broker: broker, ca: stranger) }, awaitBridges: false) { hub in
                let reason = try await Self.notConnectedReason(hub: hub)
                #expect(reason.contains("localhost:\(broker.port)") && reason.contains("TLS"), "\(reason)")
                #expect(try await Self.counter("messages_received", port: hub.port) == 0)
            }
        }
    }

    @Test("a broker that asks for a client certificate: the bridge presents tls_certificate_file and maps; without one it is refused")
    func clientCertificate() async throws {
        let certificate = try ThrowawayCertificate()
        let client = try ThrowawayCertificate()
        defer {
            certificate.remove()
            client.remove()
        }
        try await withMosquitto(tls: certificate, clientCertificate: client) { broker in
            try await withHub(engine: .memory, configure: { Self.tlsTopics(&$0, broker: broker, ca: certificate, client: client) }) { hub in
                let status = try await Self.statusReachesADashboard(hub: hub, broker: broker, machine: "M-206", state: "RUN")
                #expect(status == .string("running"))
            }
            try await withHub(redisURL: nil, configure: { Self.tlsTopics(&$0, broker: broker, ca: certificate) }, awaitBridges: false) { hub in
                _ = try await Self.notConnectedReason(hub: hub)
                // Refused at the handshake, again at every reconnect (each 1 s here): still not connected later.
                try await Task.sleep(for: .seconds(2))
                let ready = try await HTTP.get(port: hub.port, "/ready")
                #expect(ready.json["degraded"]?.arrayValue?.first?["reason"]?.stringValue?.contains("not connected") == true, "\(ready.text)")
            }
        }
    }

    @Test("Sparkplug: births, data by alias, historical data never replaces live state, a malformed payload is skipped, the will NDEATH marks every device offline", arguments: EngineKind.allCases)
    func sparkplugLifecycle(engine: EngineKind) async throws {
        try await withMosquitto { broker in
            try await withHub(engine: engine, configure: { Self.sparkplug(&$0, broker: broker) }) { hub in
                let socket = try await TestSocket(port: hub.port)
                try await socket.subscribe(["line:Line-7:*"])
                let edge = try SparkplugEdgeNode(endpoint: broker.endpoint(id: "edge-7"), group: "Plant", node: "Line-7", devices: ["M-701", "M-702"])
                try await edge.start(timeout: .seconds(30))

                // DBIRTH: each device's status as born (idle), then its metrics.
                var born: Set<String> = []
                while born.count < 2 {
                    let event = try await socket.nextEvent()
                    if event["event_type"] == .string("resource_status_changed"), case .string(let id)? = event["entity_id"] {
                        #expect(event["data"]?["current_status"] == .string("idle"))
                        born.insert(id)
                    }
                }

                // DDATA naming the status by alias.
                let sent = Date()
                try edge.publishStatus(device: "M-701", status: "running", timestamp: sent)
                let running = try await Self.nextStatus(socket, "M-701")
                #expect(running["data"]?["current_status"] == .string("running"))
                #expect(running["data"]?["previous_status"] == .string("idle"))
                #expect(running["metadata"]?["source"] == .string("sparkplug"))
                // The metric's timestamp is the event's.
                #expect(running["timestamp"]?.stringValue.flatMap { try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse($0) }.map { abs($0.timeIntervalSince(sent)) < 0.002 } == true)

                // Back-filled history: stored and delivered as late, never the cached state.
                try edge.publishStatus(device: "M-701", status: "breakdown", timestamp: sent.addingTimeInterval(-60), historical: true)
                let historical = try await Self.nextStatus(socket, "M-701")
                #expect(historical["data"]?["current_status"] == .string("breakdown"))
                #expect(historical["late"] == .bool(true))
                #expect(try await HTTP.get(port: hub.port, "/v1/state/machine/M-701").json["data"]?["current_status"] == .string("running"))

                // Garbage on a DDATA topic: counted, and the node's next message still maps.
                try edge.publishRaw(device: "M-702", payload: [0xFF, 0xFF, 0xFF, 0x0A, 0x01])
                try edge.publishStatus(device: "M-702", status: "maintenance")
                let maintenance = try await Self.nextStatus(socket, "M-702")
                #expect(maintenance["data"]?["current_status"] == .string("maintenance"))
                #expect(try await Self.counter("messages_refused", port: hub.port) >= 1)

                // The edge node's connection dies: the broker publishes its NDEATH will, the hub marks both devices
                // offline at once.
                await edge.kill()
                var offline: Set<String> = []
                while offline.count < 2 {
                    let event = try await Self.nextStatus(socket, nil, timeout: .seconds(10))
                    if event["data"]?["current_status"] == .string("offline"), case .string(let id)? = event["entity_id"] { offline.insert(id) }
                }
                for machine in ["M-701", "M-702"] {
                    let state = try await HTTP.get(port: hub.port, "/v1/state/machine/\(machine)")
                    #expect(state.json["data"]?["current_status"] == .string("offline"))
                }
            }
        }
    }

    @Test("Sparkplug: a malformed topic in the namespace is counted and logged as refused; another host's STATE is not")
    func malformedSparkplugTopic() async throws {
        try await withMosquitto { broker in
            try await withHub(engine: .memory, configure: { Self.sparkplug(&$0, broker: broker) }) { hub in
                let publisher = try await Self.publisher(broker)
                defer { Task { await publisher.stop() } }
                // One publisher's messages arrive in order: the STATE is handled before the two after it.
                for topic in ["spBv1.0/STATE/another-host", "spBv1.0/G1/XDATA/Line-8/SP-1", "spBv1.0/G1/DDATA/Line-8"] {
                    try publisher.publish(MQTTMessage(topic: topic, payload: Array("x".utf8)))
                }
                try await eventually("the malformed topics refused", timeout: .seconds(20)) {
                    (try? await Self.counter("messages_refused", port: hub.port)) ?? 0 >= 2
                }
                try await Task.sleep(for: .milliseconds(200))
                #expect(try await Self.counter("messages_refused", port: hub.port) == 2)
                #expect(try await Self.counter("messages_received", port: hub.port) >= 3)
                #expect(try await Self.counter("events_mapped", port: hub.port) == 0)
            }
        }
    }

    @Test("Sparkplug: a seq gap not filled within the reorder timeout maps what waited and asks the node to rebirth")
    func sequenceGap() async throws {
        try await withMosquitto { broker in
            try await withHub(engine: .memory, configure: { Self.sparkplug(&$0, broker: broker, reorderTimeoutMs: 300) }) { hub in
                let socket = try await TestSocket(port: hub.port)
                try await socket.subscribe(["machine:*"])
                let edge = try SparkplugEdgeNode(endpoint: broker.endpoint(id: "edge-8"), group: "Plant", node: "Line-8", devices: ["M-801"])
                try await edge.start(timeout: .seconds(30))
                defer { Task { await edge.stop() } }
                _ = try await Self.nextStatus(socket, "M-801")

                edge.skipSeq()
                try edge.publishStatus(device: "M-801", status: "running")
                let afterGap = try await Self.nextStatus(socket, "M-801", timeout: .seconds(30))
                #expect(afterGap["data"]?["current_status"] == .string("running"))
                try await eventually("the edge node got a rebirth request") { edge.rebirthRequests == 1 }
                try await eventually("and was born again") { edge.births == 2 }
                #expect(try await Self.counter("rebirth_requests", port: hub.port) == 1)

                // After the rebirth its seq starts over and maps without another request.
                try edge.publishStatus(device: "M-801", status: "idle")
                var last = try await Self.nextStatus(socket, "M-801")
                while last["data"]?["current_status"] != .string("idle") || last["metadata"]?["triggered_by"]?.stringValue?.hasPrefix("DDATA") != true {
                    last = try await Self.nextStatus(socket, "M-801")
                }
                #expect(edge.rebirthRequests == 1)
            }
        }
    }

    @Test("the broker restarts mid-stream: the bridge reconnects and re-subscribes, and nothing the broker acknowledged after that is lost")
    func brokerRestart() async throws {
        try await withMosquitto { broker in
            try await withHub(engine: .memory, configure: { Self.plainTopics(&$0, broker: broker) }) { hub in
                let socket = try await TestSocket(port: hub.port)
                try await socket.subscribe(["machine:*"])
                let publisher = try await Self.publisher(broker)
                defer { Task { await publisher.stop() } }
                try publisher.publish(Self.statusMessage("M-1", "RUN"))
                _ = try await socket.nextEvent()

                try await broker.restart()
                try await eventually("the bridge noticed", timeout: .seconds(10)) {
                    try await HTTP.get(port: hub.port, "/ready").json["degraded"] != nil || hub.hub.bridges[0].problem == nil
                }
                try await eventually("the bridge reconnected", timeout: .seconds(15)) { hub.hub.bridges[0].problem == nil && publisher.isConnected }
                // The bridge's SUBSCRIBE is in once a probe gets through; from then on every acknowledged message arrives.
                var probe = 0
                while true {
                    probe += 1
                    try publisher.publish(Self.statusMessage("PROBE-\(probe)", "RUN"))
                    if let event = try? await socket.nextEvent(timeout: .milliseconds(300)), event["entity_id"]?.stringValue?.hasPrefix("PROBE") == true { break }
                    #expect(probe < 100)
                    if probe >= 100 { return }
                }
                for index in 0..<50 { try publisher.publish(Self.statusMessage("M-\(100 + index)", "RUN")) }
                var seen: Set<String> = []
                while seen.count < 50 {
                    let event = try await socket.nextEvent(timeout: .seconds(30))
                    if case .string(let id)? = event["entity_id"], !id.hasPrefix("PROBE") { seen.insert(id) }
                }
                #expect(seen.count == 50)
            }
        }
    }

    @Test("two nodes bridging one broker store each message once: shared subscriptions, or without them the message's own key", arguments: ["statushub", ""])
    func twoNodesOneBroker(shareGroup: String) async throws {
        try await withMosquitto { broker in
            try await withRedisServer { redis in
                try await withHub(redisURL: redis.url, configure: { Self.plainTopics(&$0, broker: broker, shareGroup: shareGroup) }) { first in
                    try await withHub(redisURL: redis.url, configure: { Self.plainTopics(&$0, broker: broker, shareGroup: shareGroup) }) { second in
                        let socket = try await TestSocket(port: first.port)
                        try await socket.subscribe(["machine:*"])
                        let publisher = try await Self.publisher(broker)
                        defer { Task { await publisher.stop() } }
                        // Both bridges' subscriptions are in place once each has received a probe.
                        var probe = 0
                        func bothReceived() async throws -> Bool {
                            let heardFirst = try await Self.counter("messages_received", port: first.port)
                            let heardSecond = try await Self.counter("messages_received", port: second.port)
                            return heardFirst > 0 && heardSecond > 0
                        }
                        while try await !bothReceived() {
                            probe += 1
                            try publisher.publish(Self.statusMessage("PROBE-\(probe)", "RUN"))
                            try await Task.sleep(for: .milliseconds(50))
                            #expect(probe < 400)
                            if probe >= 400 { return }
                        }
                        try await Task.sleep(for: .milliseconds(200))
                        func total(_ name: String) async throws -> Double {
                            try await Self.counter(name, port: first.port) + Self.counter(name, port: second.port)
                        }
                        let (mappedBefore, duplicatesBefore) = (try await total("events_mapped"), try await total("duplicates"))
                        let start = Date()
                        for index in 0..<40 {
                            try publisher.publish(Self.statusMessage("M-\(index)", "RUN", at: start.addingTimeInterval(Double(index) / 1000)))
                        }
                        var ids: [String] = []
                        while ids.count < 40 {
                            let event = try await socket.nextEvent(timeout: .seconds(30))
                            if case .string(let id)? = event["entity_id"], !id.hasPrefix("PROBE") { ids.append(id) }
                        }
                        let extra = await socket.drain(for: .milliseconds(500)).filter { $0.contains(#""op":"event""#) && !$0.contains("PROBE") }
                        #expect(Set(ids).count == 40)
                        #expect(extra.isEmpty)
                        #expect(try await total("events_mapped") - mappedBefore == 40)
                        // Without shared subscriptions each node received every message; the second to append it was
                        // answered with the first one's id.
                        #expect(try await total("duplicates") - duplicatesBefore == (shareGroup.isEmpty ? 40 : 0))
                    }
                }
            }
        }
    }

    /// libmosquitto acknowledges a QoS 1 message (PUBACK) as it hands it over, before the engine stored it, and the
    /// bridge's clean session keeps nothing at the broker: what a bridge holds unstored when it dies is lost
    /// (docs/operations.md). Here the engine hangs (Redis stopped), the bridge holds two messages, and the bridge
    /// dies: the one it had not yet sent to the engine is never stored; the next message after it is.
    @Test("a bridge that dies between the broker's delivery and the engine's acknowledgement loses what it held, and only that")
    func crashBetweenDeliveryAndStore() async throws {
        try await withMosquitto { broker in
            try await withRedisServer { redis in
                try await withHub(redisURL: redis.url, redisHealthCheck: .seconds(60)) { hub in
                    var config = hub.hub.config
                    Self.plainTopics(&config, broker: broker)
                    let metrics = HubMetrics()
                    let bridge = try MQTTBridge(config: config, engine: hub.hub.engine, registry: metrics.registry, logger: .init(label: "test-bridge"))
                    let running = Task { try await bridge.run() }
                    try await eventually("bridge connected", timeout: .seconds(30)) { bridge.problem == nil }
                    let publisher = try await Self.publisher(broker)
                    defer { Task { await publisher.stop() } }
                    try await eventually("the bridge's subscription is in", timeout: .seconds(30)) {
                        try publisher.publish(Self.statusMessage("M-1", "RUN"))
                        try await Task.sleep(for: .milliseconds(50))
                        return try await hub.hub.engine.latest(entityKey: "resource:machine:M-1") != nil
                    }

                    // M-2's append is sent and hangs; M-4 waits behind it in the bridge's hand-off, acknowledged to the
                    // broker and never sent to the engine.
                    redis.pause()
                    try publisher.publish(Self.statusMessage("M-2", "RUN"))
                    try await eventually("the bridge holds M-2") { bridge.pending == 1 }
                    // Its append has reached the stopped Redis (unread in its socket), so M-4 cannot join that batch.
                    try await eventually("M-2's append is sent") { redis.unreadBytes() > 0 }
                    try publisher.publish(Self.statusMessage("M-4", "RUN"))
                    try await eventually("and M-4") { bridge.pending == 2 }
                    running.cancel()
                    _ = try? await running.value
                    redis.resume()

                    // A bridge in its place hears the next message, never M-2: the broker had it acknowledged.
                    let replacement = try MQTTBridge(config: config, engine: hub.hub.engine, registry: HubMetrics().registry, logger: .init(label: "test-bridge"))
                    let replacing = Task { try await replacement.run() }
                    defer { replacing.cancel() }
                    try await eventually("replacement connected", timeout: .seconds(30)) { replacement.problem == nil }
                    try await eventually("M-3 stored", timeout: .seconds(10)) {
                        try publisher.publish(Self.statusMessage("M-3", "RUN"))
                        try await Task.sleep(for: .milliseconds(50))
                        return try await hub.hub.engine.latest(entityKey: "resource:machine:M-3") != nil
                    }
                    // M-2 was sent before the bridge died: Redis may or may not have run it. M-4 never left the bridge.
                    #expect(try await hub.hub.engine.latest(entityKey: "resource:machine:M-4") == nil)
                }
            }
        }
    }

    /// libmosquitto's own loop (`mosquitto_loop_start`) uses select(2) and stops for good when the socket's
    /// descriptor is 1024 or more — as it is in a hub that holds a thousand dashboards. The bridge polls instead.
    @Test("the bridge connects and maps when its socket's descriptor is past select's 1024")
    func highDescriptor() async throws {
        var held: [Int32] = []
        defer { for fd in held { close(fd) } }
        while (held.last ?? 0) < 1100 {
            let fd = open("/dev/null", O_RDONLY)
            guard fd >= 0 else { break }
            held.append(fd)
        }
        try #require((held.last ?? 0) >= 1100, "the descriptor limit is too low to run this test")
        try await withMosquitto { broker in
            try await withHub(engine: .memory, configure: { Self.plainTopics(&$0, broker: broker) }) { hub in
                let socket = try await TestSocket(port: hub.port)
                try await socket.subscribe(["machine:*"])
                let publisher = try await Self.publisher(broker)
                defer { Task { await publisher.stop() } }
                try publisher.publish(Self.statusMessage("M-1024", "RUN"))
                let event = try await Self.nextStatus(socket, "M-1024")
                #expect(event["data"]?["current_status"] == .string("running"))
            }
        }
    }

    @Test("mapping config is checked at start: unknown event type, a name the topic does not have, wildcards in a topic")
    func configChecked() throws {
        let catalog = Catalog.standard
        func problem(_ mapping: HubConfig.TopicMapping) -> String? {
            var config = HubConfig()
            config.mqtt.url = "mqtt://127.0.0.1:1"
            config.mqtt.topics = [mapping]
            config.catalog = catalog
            do {
                _ = try MQTTBridge(config: config, engine: MemoryEngine(config: config), registry: HubMetrics().registry, logger: .init(label: "t"))
                return nil
            } catch {
                return "\(error)"
            }
        }
        #expect(problem(.init(topic: "a/{m}/status", eventType: "nope", entityType: "machine", entityId: "{m}"))?.contains("mqtt.topics[0].event_type") == true)
        #expect(problem(.init(topic: "a/{m}/status", eventType: "resource_status_changed", entityType: "machine", entityId: "{x}"))?.contains("{x}") == true)
        #expect(problem(.init(topic: "a/+/status", eventType: "resource_status_changed", entityType: "machine", entityId: "M"))?.contains("wildcards") == true)
        #expect(problem(.init(topic: "a/{m}/status", eventType: "resource_status_changed", entityType: "machine", entityId: "{m}")) == nil)
        #expect(throws: ConfigError.self) { try HubConfig.load(yaml: "mqtt: {url: 'mqtt://127.0.0.1:1'}") }

        // The YAML shape docs/configuration.md shows, and the environment over it.
        let loaded = try HubConfig.load(yaml: """
            mqtt:
              url: mqtt://broker:1883
              share_group: ""
              topics:
                - topic: "plant/{site}/{line}/{machine}/status"
                  event_type: resource_status_changed
                  entity_type: machine
                  entity_id: "{machine}"
                  line: "{line}"
                  fields: {state: current_status}
                  values: {current_status: {RUN: running}}
              sparkplug:
                host_id: hub-a
                line: null
                status_values: {"1": running}
                reorder_timeout_ms: 500
            """, environment: ["STATUSHUB_MQTT_PASSWORD": "12345", "STATUSHUB_MQTT_CLIENT_ID": "007"])
        #expect(loaded.mqtt.url == "mqtt://broker:1883")
        #expect(loaded.mqtt.shareGroup == "")
        #expect(loaded.mqtt.password == "12345" && loaded.mqtt.clientId == "007")
        #expect(loaded.mqtt.topics.first?.fields == ["state": "current_status"])
        #expect(loaded.mqtt.topics.first?.values == ["current_status": ["RUN": "running"]])
        #expect(loaded.mqtt.sparkplug?.hostId == "hub-a")
        #expect(loaded.mqtt.sparkplug?.line == nil)
        #expect(loaded.mqtt.sparkplug?.entityId == "{device}")
        #expect(loaded.mqtt.sparkplug?.statusValues == ["1": "running"])
        #expect(loaded.mqtt.sparkplug?.reorderTimeoutMs == 500)
        #expect(throws: ConfigError.self) { try HubConfig.load(yaml: "mqtt: {url: 'mqtt://b', sparkplug: {}, keepalive: 3}") }
    }

    /// A mapping whose names all exist but can never make a valid event (the catalog's material carries no status;
    /// `down` is no machine status; a payload value renamed to a status the catalog refuses, or under a misspelt field)
    /// stops the node at start, naming the key, instead of refusing every message.
    @Test("mappings the catalog can never take are refused at start", arguments: [
        ("topics:\n    - {topic: \"a/{m}/status\", event_type: resource_status_changed, entity_type: material, entity_id: \"{m}\"}",
            "config: mqtt.topics[0].entity_type 'material' cannot carry mqtt.topics[0].event_type 'resource_status_changed'"),
        ("sparkplug: {host_id: x, offline_status: down}",
            "config: mqtt.sparkplug.offline_status 'down' is not a status of 'machine'; its statuses: running, idle, maintenance, breakdown, offline"),
        ("sparkplug: {host_id: x, status_values: {\"1\": running, \"2\": spinning}}",
            "config: mqtt.sparkplug.status_values.2 'spinning' is not a status of 'machine'"),
        ("topics:\n    - {topic: \"a/{m}/status\", event_type: resource_status_changed, entity_type: machine, entity_id: \"{m}\", values: {current_status: {RUN: running, STOP: stoped}}}",
            "config: mqtt.topics[0].values.current_status.STOP 'stoped' cannot stand as data.current_status: unknown value 'stoped'; allowed: running, idle, maintenance, breakdown, offline"),
        ("topics:\n    - {topic: \"a/{m}/status\", event_type: resource_status_changed, entity_type: machine, entity_id: \"{m}\", values: {curent_status: {RUN: running}}}",
            "config: mqtt.topics[0].values.curent_status.RUN: 'curent_status' is not a data field of resource_status_changed for machine; its fields: "),
        ("sparkplug: {host_id: x, entity_type: material}",
            "config: mqtt.sparkplug.entity_type 'material' cannot carry mqtt.sparkplug.status_event_type 'resource_status_changed'"),
    ])
    func mappingsTheCatalogCannotTake(mapping: String, message: String) throws {
        let config = try HubConfig.load(yaml: "mqtt:\n  url: mqtt://127.0.0.1:1\n  \(mapping)\n")
        #expect {
            try MQTTBridge(config: config, engine: MemoryEngine(config: config), registry: HubMetrics().registry, logger: .init(label: "t"))
        } throws: { error in
            (error as? ConfigError)?.description.hasPrefix(message) == true
        }
        let working = try HubConfig.load(yaml: "mqtt:\n  url: mqtt://127.0.0.1:1\n  sparkplug: {host_id: x, status_values: {\"1\": running}}\n")
        _ = try MQTTBridge(config: working, engine: MemoryEngine(config: working), registry: HubMetrics().registry, logger: .init(label: "t"))
    }

    /// The next status event (of `machine`, when given).
    static func nextStatus(_ socket: TestSocket, _ machine: String?, timeout: Duration = .seconds(30)) async throws -> [String: JSONValue] {
        let deadline = ContinuousClock.now + timeout
        while true {
            let event = try await socket.nextEvent(timeout: deadline - ContinuousClock.now)
            guard event["event_type"] == .string("resource_status_changed") else { continue }
            if let machine, event["entity_id"] != .string(machine) { continue }
            return event
        }
    }
}
