import Foundation
import Logging
import NIOWebSocket
import ServiceLifecycle
import StatusHubCore
import StatusHubServer
import Testing

@Suite("Graceful shutdown")
struct ShutdownTests {
    @Test func sigtermDrainsAndClosesWith1001() async throws {
        var config = HubConfig()
        config.server.port = 0
        config.server.shutdownGraceSeconds = 3
        var logger = Logger(label: "test-hub")
        logger.logLevel = .warning
        let engine = MemoryEngine(config: config)
        let hub = try StatusHub(config: config, engine: engine)
        let ports = AsyncStream<Int>.makeStream()
        let group = ServiceGroup(configuration: .init(
            services: hub.makeServices(logger: logger) { ports.continuation.yield($0) }, logger: logger))
        let running = Task { try await group.run() }
        var iterator = ports.stream.makeAsyncIterator()
        let port = try #require(await iterator.next())
        while !engine.isReady { try await Task.sleep(for: .milliseconds(5)) }

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
}
