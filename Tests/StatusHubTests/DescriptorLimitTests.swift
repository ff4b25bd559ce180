import Foundation
import StatusHubCore
import Testing

/// The open-files limit (`DescriptorLimit`): a node raises its soft limit to the hard one, and holds its connections
/// below what the limit leaves room for, so a node started under a low `ulimit -n` answers the dashboard that does
/// not fit with 4503 and keeps the descriptors its publishers and engine need.
@Suite struct DescriptorLimitTests {
    @Test func aNodeKeepsAnEighthOfItsDescriptorsAndAtLeast64ForEverythingButSubscribers() {
        #expect(DescriptorLimit(soft: 1_024, hard: 524_288).subscriberRoom == 896)
        #expect(DescriptorLimit(soft: 1_048_576, hard: 1_048_576).subscriberRoom == 917_504)
        #expect(DescriptorLimit(soft: 120, hard: 120).subscriberRoom == 56)
        #expect(DescriptorLimit(soft: 40, hard: 40).subscriberRoom == 0)
        // And a sixteenth, at least 32, for the process itself, whatever connects.
        #expect(DescriptorLimit(soft: 1_024, hard: 1_024).acceptRoom == 960)
        #expect(DescriptorLimit(soft: 120, hard: 120).acceptRoom == 88)
    }

    /// 110 connections that never send a request, against a node whose limit is 120: it accepts 88 and stops, so a
    /// SIGHUP still reads its config and catalog files, and a connection waiting in the listen queue is served as
    /// soon as others close; it says so once, not again when it fills again within the minute. Before, it accepted
    /// until `accept` failed for want of descriptors, and from then on the process could open nothing — no file, no
    /// Redis connection.
    @Test func aNodeFullOfConnectionsStopsAcceptingAndKeepsDescriptorsForItself() async throws {
        let stderr = Pipe()
        let hub = try await HubProcess.start(
            environment: ["STATUSHUB_LOG_LEVEL": "info"], stderr: stderr, descriptors: (soft: 120, hard: 120))
        var idle: [RawSocket] = []
        do {
            for _ in 0..<110 { idle.append(try RawSocket(port: hub.port)) }
            try await Task.sleep(for: .milliseconds(500))
            hub.send(SIGHUP)
            try await Task.sleep(for: .milliseconds(500))
            let waiting = Task { try await HTTP.get(port: hub.port, "/health").status }
            try await Task.sleep(for: .milliseconds(500))
            for socket in idle.prefix(40) { socket.reset() }
            #expect(try await waiting.value == 200, "served once connections closed")
            // Full again: not said again within the minute (a node kept full by churn would say it per connection).
            for _ in 0..<30 { idle.append(try RawSocket(port: hub.port)) }
            try await Task.sleep(for: .milliseconds(300))
        } catch {
            _ = await hub.terminate()
            throw error
        }
        idle.removeAll()
        _ = await hub.terminate()
        let log = String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(log.components(separatedBy: "not accepting connections: 88 open, all the open-files limit (120) leaves").count == 2, "\(log.suffix(1500))")
        #expect(log.contains("SIGHUP: reloaded the credentials"), "\(log.suffix(1500))")
        #expect(!log.contains("SIGHUP: kept the credentials in use"), "\(log.suffix(1500))")
    }

    /// Every way a connection ends gives its place under that ceiling back, once: 100 dashboards one after another, 100
    /// requests each on its own connection, 100 connections reset before sending anything and 50 handshakes refused
    /// (400: a malformed subscribe in the URL) — 350 in all against a node that accepts 88 at a time, which would stop
    /// accepting if any way kept its place — and then the node counts one open connection: the `/metrics` request
    /// reading it (none counted twice, or it would read less).
    @Test func everyWayAConnectionEndsGivesItsPlaceBack() async throws {
        let hub = try await HubProcess.start(environment: ["STATUSHUB_LOG_LEVEL": "warning"], descriptors: (soft: 120, hard: 120))
        do {
            for index in 0..<100 {
                let dashboard = try await TestSocket(port: hub.port)
                if index % 10 == 0 { _ = try await dashboard.subscribe(["alerts"]) }
                _ = await dashboard.close()
            }
            for _ in 0..<100 {
                #expect(try await HTTP.request("GET", port: hub.port, "/health", contentType: nil, headers: ["Connection": "close"]).status == 200)
            }
            try await RawSocket.offPool {
                for _ in 0..<100 { try RawSocket(port: hub.port).reset() }
                for _ in 0..<50 {
                    let socket = try RawSocket(port: hub.port)
                    try socket.upgrade(path: "/v1/ws?channels=alerts&recent=500")
                    _ = socket.responseStatus()
                    socket.reset()
                }
            }
            var open = ""
            for _ in 0..<100 {
                let metrics = String(decoding: try await HTTP.request("GET", port: hub.port, "/metrics", contentType: nil, headers: ["Connection": "close"]).body, as: UTF8.self)
                open = metrics.split(separator: "\n").first { $0.hasPrefix("statushub_tcp_connections ") }.map(String.init) ?? metrics
                if open == "statushub_tcp_connections 1.0" { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(open == "statushub_tcp_connections 1.0")
        } catch {
            _ = await hub.terminate()
            throw error
        }
        _ = await hub.terminate()
    }

    /// Under a soft limit of 80 and a hard one of 120 (a shell's `ulimit`, systemd's `LimitNOFILE=`) a node with the
    /// default `server.max_connections` (10,000) raises its soft limit to 120 and takes 56 dashboards; the 57th is
    /// refused with 4503 and the limit in its reason, and the node still takes a publisher's POST and delivers it.
    /// Before, it stayed at 80 and admitted dashboards until accepts failed for want of descriptors: the one after
    /// them waited with no answer, and so did a publisher's new connection.
    @Test func aNodeUnderALowOpenFilesLimitRefusesTheDashboardThatDoesNotFitAndKeepsTakingEvents() async throws {
        let stderr = Pipe()
        let hub = try await HubProcess.start(
            environment: ["STATUSHUB_LOG_LEVEL": "info"], stderr: stderr, descriptors: (soft: 80, hard: 120))
        var dashboards: [TestSocket] = []
        do {
            let metrics = String(decoding: try await HTTP.get(port: hub.port, "/metrics").body, as: UTF8.self)
            #expect(metrics.contains("\nstatushub_connections_limit 56.0\n"), "\(metrics)")
            #expect(metrics.contains("\nstatushub_tcp_connections_limit 88.0\n"), "\(metrics)")
            for _ in 0..<56 { dashboards.append(try await TestSocket(port: hub.port)) }
            _ = try await dashboards[0].subscribe(["alerts"])
            let refusal = try await RawSocket.offPool {
                let socket = try RawSocket(port: hub.port)
                try socket.upgrade()
                return RawSocket.closePayload(in: socket.read(timeout: 10) { RawSocket.closeCode(in: $0) != nil }.bytes)
            }
            let payload = try #require(refusal, "the 57th dashboard got no close frame")
            #expect(payload.count >= 2 && UInt16(payload[0]) << 8 | UInt16(payload[1]) == 4503)
            #expect(String(decoding: payload.dropFirst(2), as: UTF8.self) == "56 connections open (the open-files limit, 120); try another node")
            #expect(try await HTTP.post(port: hub.port, event: SampleEvents.alert("M-FD")).status == 202)
            #expect(try await dashboards[0].nextEvent()["entity_id"] == .string("M-FD"))
        } catch {
            for dashboard in dashboards { _ = await dashboard.close() }
            _ = await hub.terminate()
            throw error
        }
        for dashboard in dashboards { _ = await dashboard.close() }
        _ = await hub.terminate()
        let log = String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(log.contains("open-files limit raised from 80 to 120, the hard limit"), "\(log.suffix(1500))")
        #expect(log.contains("server.max_connections is 10000, but this process may open 120 files"), "\(log.suffix(1500))")
    }
}
