import Foundation
import Logging
import NIOWebSocket
import ServiceLifecycle
import StatusHubCore
import StatusHubRedis
import StatusHubServer
import Testing

@Suite("Graceful shutdown")
struct ShutdownTests {
    /// A node with the whole service group `statushub serve` runs (the drain included, which `withHub` leaves out),
    /// started and ready; the test triggers its shutdown and awaits `running`.
    static func start(
        config: HubConfig, engine makeEngine: (Logger) throws -> any Engine
    ) async throws -> (port: Int, group: ServiceGroup, running: Task<Void, any Error>) {
        var logger = Logger(label: "test-hub")
        logger.logLevel = .warning
        let engine = try makeEngine(logger)
        let hub = try StatusHub(config: config, engine: engine)
        let ports = AsyncStream<Int>.makeStream()
        let group = ServiceGroup(configuration: .init(
            services: hub.makeServices(logger: logger) { ports.continuation.yield($0) }, logger: logger))
        let running = Task { try await group.run() }
        var iterator = ports.stream.makeAsyncIterator()
        let port = try #require(await iterator.next())
        while !engine.isReady { try await Task.sleep(for: .milliseconds(5)) }
        return (port, group, running)
    }

    @Test func sigtermDrainsAndClosesWith1001() async throws {
        var config = HubConfig()
        config.server.port = 0
        config.server.shutdownGraceSeconds = 3
        let (port, group, running) = try await Self.start(config: config) { _ in MemoryEngine(config: config) }

        let socket = try await TestSocket(port: port)
        try await socket.subscribe(["resource-status"])
        let accepted = try await HTTP.post(port: port, events: (0..<50).map { SampleEvents.machineStatus("M-\($0)") })
        #expect(accepted.status == 202)

        await group.triggerGracefulShutdown()
        // Everything acknowledged before the shutdown still arrives, then the close says "go elsewhere".
        var received = 0
        while received < 50 {
            _ = try await socket.nextEvent()
            received += 1
        }
        let close = try await socket.closedByHub()
        #expect(close?.closeCode == .goingAway)
        #expect(close?.reason == CloseCode.goingAway.reason)
        try await running.value
    }

    /// A request being appended when the shutdown begins (admitted just before it) is answered, and its event reaches
    /// the node's subscribers before their 1001: the drain used to close the sockets at once, as nothing acknowledged
    /// was left undelivered, and the event acknowledged a moment later never reached them.
    ///
    /// The premise is the machine's timing: a loaded run can take longer than the 300 ms given to get the request to
    /// its append, and the shutdown then rightly refuses it (503, nothing acknowledged). Such a run proves nothing
    /// either way, so the scenario runs again on fresh servers, up to three times; an acknowledged event that never
    /// arrived fails at once.
    @Test func anAppendInFlightAtTheShutdownReachesSubscribersBeforeThe1001() async throws {
        for attempt in 1...3 {
            let appending = try await withRedisServer { redis in
                var config = HubConfig()
                config.server.host = "127.0.0.1"
                config.server.port = 0
                config.server.shutdownGraceSeconds = 10
                config.redis.url = redis.url
                config.redis.commandTimeoutSeconds = 10
                let (port, group, running) = try await Self.start(config: config) { logger in
                    try RedisEngine(config: config, logger: logger, healthCheckInterval: .seconds(120))
                }

                let socket = try await TestSocket(port: port)
                try await socket.subscribe(["resource-status"])
                #expect(try await HTTP.post(port: port, event: SampleEvents.machineStatus("M-before")).status == 202)
                _ = try await socket.nextEvent()

                // Redis hangs with the append in flight; the shutdown begins; Redis comes back.
                redis.pause()
                let inFlight = Task { try await HTTP.post(port: port, event: SampleEvents.machineStatus("M-in-flight")) }
                try await Task.sleep(for: .milliseconds(300))
                await group.triggerGracefulShutdown()
                try await Task.sleep(for: .milliseconds(300))
                redis.resume()

                let answer = try await inFlight.value
                let appending = answer.status != 503 || attempt == 3
                if appending {
                    #expect(answer.status == 202, "\(answer.text)")
                    let event = try await socket.nextEvent()
                    #expect(event["entity_id"] == .string("M-in-flight"))
                }
                let close = try await socket.closedByHub()
                #expect(close?.closeCode == .goingAway)
                try await running.value
                return appending
            }
            if appending { return }
        }
    }
}
