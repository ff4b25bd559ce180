import Foundation
#if canImport(Glibc)
import Glibc
#endif
import StatusHubCore
import StatusHubRedis
import Synchronization
import Testing

@testable import StatusHubServer

/// The newcomer's first minute, run for real: `statushub tail` in one process, `statushub publish` in another.
@Suite("Command line")
struct CommandLineTests {
    func statushub(_ arguments: [String], stdout: Pipe? = nil, stdin: Pipe? = nil) throws -> ChildProcess {
        try ChildProcess.spawn(
            HubProcess.executable.path, arguments, stdin: stdin.map { .pipe($0) } ?? .null, stdout: stdout.map { .pipe($0) } ?? .null,
            stderr: ProcessInfo.processInfo.environment["CLI_STDERR"] == nil ? .null : .inherit)
    }

    /// The Redis password is in the URL the node is given, and nowhere in what it logs.
    @Test func serveNeverLogsTheRedisPassword() async throws {
        try await withRedisServer(extraArguments: ["--requirepass", "s3cret"]) { redis in
            let port = try LoopbackPort.unused()
            let stderr = Pipe()
            let process = try ChildProcess.spawn(
                HubProcess.executable.path, ["serve", "--host", "127.0.0.1", "--port", String(port), "--redis", "redis://:s3cret@127.0.0.1:\(redis.port)"],
                environment: ["STATUSHUB_LOG_LEVEL": "debug"], stderr: .pipe(stderr))
            var ready = false
            for _ in 0..<300 where !ready {
                ready = (try? await HTTP.get(port: port, "/ready"))?.status == 200
                if !ready { try await Task.sleep(for: .milliseconds(50)) }
            }
            kill(process.processIdentifier, SIGTERM)
            process.waitUntilExit()
            let log = String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            #expect(ready, "the node never connected with the password: \(log.suffix(500))")
            #expect(log.contains("redis://:***@127.0.0.1"), "\(log.suffix(500))")
            #expect(!log.contains("s3cret"))
        }
    }

    /// `statushub serve` with `redis.shards` (from the environment) runs the partitioned engine: it says so, spreads
    /// the events over both servers, never logs a shard's password; the shipped catalog's counters are kept per
    /// partition and read back summed.
    @Test func serveSpreadsPartitionsOverShards() async throws {
        try await withRedisServer { first in
            try await withRedisServer(extraArguments: ["--requirepass", "s3cret"]) { second in
                let environment = [
                    "STATUSHUB_REDIS_SHARDS": "[\(first.url), \"redis://:s3cret@127.0.0.1:\(second.port)\"]",
                    // 16 partitions: with 2 servers, the ring leaves one of them empty about once in 30,000 port pairs.
                    "STATUSHUB_REDIS_PARTITIONS": "16",
                    "STATUSHUB_LOG_LEVEL": "info",
                ]
                let stderr = Pipe()
                let hub = try await HubProcess.start(environment: environment, stderr: stderr)
                let reply = try await HTTP.post(port: hub.port, events: (0..<16).map { SampleEvents.machineStatus("M-\($0)", "running") })
                let counters = try await HTTP.get(port: hub.port, "/v1/counters?line=Line-2")
                _ = await hub.terminate()
                let log = String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                #expect(reply.status == 202, "\(reply.text)")
                #expect(reply.json["accepted"]?.arrayValue?.count == 16, "\(reply.text)")
                // Sixteen machines of one line, spread over the partitions: one counter, their sum.
                let running = counters.json["counters"]?.arrayValue?.filter { $0["name"] == .string("machines_running") } ?? []
                #expect(running.count == 1 && running.first?["value"] == .number(16), "\(counters.text)")
                #expect(log.contains("engine: redis, 16 partitions on"), "\(log.suffix(800))")
                #expect(!log.contains("s3cret"))
                for (server, password) in [(first, nil), (second, "s3cret")] as [(RedisServer, String?)] {
                    let admin = try await RedisConnection.connect(to: RedisURL(host: "127.0.0.1", port: server.port, password: password))
                    let streams = try await admin.send(["KEYS", "{p*}statushub:history"]).orThrow().array?.compactMap(\.text) ?? []
                    #expect(!streams.isEmpty, "each shard holds some partitions' histories")
                    let shares = try await admin.send(["KEYS", "{p*}stats:line:Line-2:machines_running"]).orThrow().array ?? []
                    #expect(!shares.isEmpty, "each shard holds some partitions' shares of the count")
                    await admin.close()
                }
            }
        }
    }

    /// `statushub serve` with `STATUSHUB_REDIS_CLUSTER`: the partitioned engine on the cluster, each partition's
    /// history on the master of its slot.
    @Test func serveOnARedisCluster() async throws {
        try await withRedisCluster { cluster in
            // The shipped catalog, counters included: a partition's share carries its tag on a cluster too.
            let environment = ["STATUSHUB_REDIS_CLUSTER": "[\(cluster.seeds[0])]", "STATUSHUB_LOG_LEVEL": "info"]
            let stderr = Pipe()
            let hub = try await HubProcess.start(environment: environment, stderr: stderr)
            let reply = try await HTTP.post(port: hub.port, events: (0..<16).map { SampleEvents.machineStatus("M-\($0)") })
            _ = await hub.terminate()
            let log = String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            #expect(reply.status == 202, "\(reply.text)")
            #expect(log.contains("engine: redis, 16 partitions on the Redis Cluster of \(cluster.seeds[0])"), "\(log.suffix(800))")
            var streams: [String] = []
            for node in cluster.nodes {
                let admin = try await cluster.connect(toNodeWithPort: node.port)
                streams += try await admin.send(["KEYS", "{p*}statushub:history"]).orThrow().array?.compactMap(\.text) ?? []
                await admin.close()
            }
            let written = Set((0..<16).map { PartitionMap(count: 16).partition(ofEntityKey: "resource:machine:M-\($0)") })
            let tags = PartitionMap(count: 16, forCluster: true)
            #expect(Set(streams) == Set(written.map { "\(tags.hashTag($0))statushub:history" }), "the history of every partition written to")
        }
    }

    /// `tail --recent` prints the alerts raised before it started, then follows live.
    @Test func tailPrintsRecentAlertsFirst() async throws {
        try await withHub(engine: .memory) { hub in
            _ = try await RecentFeedTests.heard("before", at: hub.port, posting: [RecentFeedTests.alert("M-1", "before")])
            let output = Pipe()
            let printed = Mutex("")
            output.fileHandleForReading.readabilityHandler = { handle in
                let chunk = String(decoding: handle.availableData, as: UTF8.self)
                printed.withLock { $0 += chunk }
            }
            let tail = try statushub(["tail", "--url", "ws://127.0.0.1:\(hub.port)/v1/ws", "--recent", "5", "alerts"], stdout: output)
            defer {
                if tail.isRunning { tail.terminate() }
                output.fileHandleForReading.readabilityHandler = nil
            }
            try await eventually("the recent alert printed") { printed.withLock { $0 }.contains(#""message":"before""#) }
            let refused = try statushub(["tail", "--recent", "101", "alerts"])
            refused.waitUntilExit()
            #expect(refused.terminationStatus != 0)
        }
    }

    @Test func publishAndTailTalkToAHub() async throws {
        try await withHub(engine: .memory) { hub in
            let tailOutput = Pipe()
            let printed = Mutex("")
            // Read as it arrives: a blocking read would hang the test if tail printed nothing.
            tailOutput.fileHandleForReading.readabilityHandler = { handle in
                let chunk = String(decoding: handle.availableData, as: UTF8.self)
                printed.withLock { $0 += chunk }
            }
            let tail = try statushub(["tail", "--url", "ws://127.0.0.1:\(hub.port)/v1/ws", "line:Line-2:*"], stdout: tailOutput)
            defer {
                if tail.isRunning { tail.terminate() }
                tailOutput.fileHandleForReading.readabilityHandler = nil
            }
            // Wait until the tail's subscription is registered.
            try await eventually("tail subscribed") {
                (try await HTTP.get(port: hub.port, "/metrics")).text.contains("statushub_websocket_connections 1.0")
            }
            try await Task.sleep(for: .milliseconds(200))

            let publish = try statushub(["publish", "--url", "http://127.0.0.1:\(hub.port)", "--entity", "machine:M-203", "--status", "breakdown", "--line", "Line-2"])
            let refused = try statushub(["publish", "--url", "http://127.0.0.1:\(hub.port)", "--entity", "machine:M-203", "--status", "melted"])
            let input = Pipe()
            let fromStdin = try statushub(["publish", "--url", "http://127.0.0.1:\(hub.port)"], stdin: input)
            input.fileHandleForWriting.write(Data((SampleEvents.alert("M-9") + "\n").utf8))
            try input.fileHandleForWriting.close()
            for process in [publish, refused, fromStdin] {
                try await eventually("publish to finish") { !process.isRunning }
            }
            #expect(publish.terminationStatus == 0)
            #expect(refused.terminationStatus != 0)
            #expect(fromStdin.terminationStatus == 0)

            var lines: [String] = []
            try await eventually("two events printed by tail") {
                lines = printed.withLock { $0 }.split(separator: "\n").map(String.init)
                return lines.count >= 2
            }
            let events = lines.compactMap { try? JSONDecoder().decode(JSONValue.self, from: Data($0.utf8)) }
            // The two publishers ran side by side, so either may come first.
            #expect(Set(events.compactMap { $0["entity_id"]?.stringValue }) == ["M-203", "M-9"])
            let machine = events.first { $0["entity_id"] == .string("M-203") }
            #expect(machine?["data"]?["current_status"] == .string("breakdown"))
        }
    }
}

extension CommandLineTests {
    /// A secured node over TLS: `tail` with a token and the node's certificate gets what a keyed publisher sends;
    /// without the token, or without trusting the certificate, it is refused.
    @Test func tailCarriesTokenAndTrustsTheNodesCertificate() async throws {
        let certificate = try ThrowawayCertificate()
        defer { certificate.remove() }
        let issuer = TokenIssuer()
        let secured = try AccessControlTests.secured(issuer)
        try await withHub(engine: .memory, configure: {
            secured(&$0)
            $0.server.tlsCertificateFile = certificate.certificateFile
            $0.server.tlsPrivateKeyFile = certificate.privateKeyFile
        }) { hub in
            let tailOutput = Pipe()
            let printed = Mutex("")
            tailOutput.fileHandleForReading.readabilityHandler = { handle in
                let chunk = String(decoding: handle.availableData, as: UTF8.self)
                printed.withLock { $0 += chunk }
            }
            let token = try await issuer.hs256(patterns: ["line:Line-2:*"], expiresIn: 600)
            let wss = "wss://127.0.0.1:\(hub.port)/v1/ws"
            let trusting = ["--ca-file", certificate.certificateFile, "--server-name", "localhost"]
            let tail = try statushub(["tail", "--url", wss, "--token", token] + trusting + ["line:Line-2:*"], stdout: tailOutput)
            let untrusting = try statushub(["tail", "--url", wss, "--token", token, "--server-name", "localhost", "line:Line-2:*"])
            let anonymous = try statushub(["tail", "--url", wss] + trusting + ["alerts"])
            defer {
                for process in [tail, untrusting, anonymous] where process.isRunning { process.terminate() }
                tailOutput.fileHandleForReading.readabilityHandler = nil
            }
            for process in [untrusting, anonymous] {
                // A liveness bound, not a speed one: starting the debug binary takes seconds when the suite loads the cores.
                try await eventually("refused tail to exit", timeout: .seconds(60)) { !process.isRunning }
                #expect(process.terminationStatus != 0)
            }
            try await eventually("tail subscribed") { hub.hub.fanOut.openConnections.count == 1 }
            try await Task.sleep(for: .milliseconds(200))
            let accepted = try await TLSHTTPClient.request(
                port: hub.port, method: .POST, path: "/v1/events", body: SampleEvents.machineStatus("M-5", line: "Line-2"),
                headers: [("Authorization", "Bearer \(AccessControlTests.lineKey)")], trust: certificate.clientConfiguration)
            #expect(accepted.status == 202)
            try await eventually("the event printed by tail") { printed.withLock { $0 }.contains(#""entity_id":"M-5""#) }
        }
    }

    /// `publish --key` (or STATUSHUB_API_KEY) against a node that requires keys; without one it fails.
    @Test func publishCarriesItsKey() async throws {
        try await withHub(engine: .memory, configure: try AccessControlTests.secured(TokenIssuer())) { hub in
            let arguments = ["publish", "--url", "http://127.0.0.1:\(hub.port)", "--entity", "machine:M-6", "--status", "running", "--line", "Line-2"]
            let keyed = try statushub(arguments + ["--key", AccessControlTests.lineKey])
            let keyless = try statushub(arguments)
            for process in [keyed, keyless] {
                try await eventually("publish to finish") { !process.isRunning }
            }
            #expect(keyed.terminationStatus == 0)
            #expect(keyless.terminationStatus != 0)
            #expect(try await HTTP.get(port: hub.port, "/health").status == 200)
        }
    }
}

extension CommandLineTests {
    /// `publish` follows a 503 as it says: Redis holds the write unanswered (`CLIENT PAUSE … WRITE`: reads and
    /// PINGs go on, so nothing but the write itself meets the hang, however slowly a loaded machine starts the
    /// process), the hub answers "unknown" with a key, and the CLI resends with it. A paused client's command
    /// is dropped when the hub closes the connection, so here the first attempt never ran: the resend is stored,
    /// under the hub's key, once. (The other branch, a hung write that did run, is `RedisFailureTests`'.)
    @Test func publishResendsWithTheKeysOfAnUnknownOutcome() async throws {
        try await withRedisServer { redis in
            try await withHub(redisURL: redis.url, configure: { $0.redis.commandTimeoutSeconds = 1 }, redisHealthCheck: .seconds(120)) { hub in
                let output = Pipe()
                let printed = Mutex("")
                output.fileHandleForReading.readabilityHandler = { handle in
                    let chunk = String(decoding: handle.availableData, as: UTF8.self)
                    printed.withLock { $0 += chunk }
                }
                defer { output.fileHandleForReading.readabilityHandler = nil }
                let admin = try await RedisConnection.connect(to: RedisURL(parsing: redis.url))
                let input = Pipe()
                let publish = try statushub(
                    ["publish", "--url", "http://127.0.0.1:\(hub.port)", "--retries", "6"], stdout: output, stdin: input)
                #expect(try await admin.send(["CLIENT", "PAUSE", "60000", "WRITE"]) == .status("OK"))
                input.fileHandleForWriting.write(Data(SampleEvents.machineStatus("M-cli").utf8))
                try input.fileHandleForWriting.close()
                try await eventually("the hub answered 503", timeout: .seconds(30)) { printed.withLock { $0 }.contains("HTTP 503") }
                #expect(try await admin.send(["CLIENT", "UNPAUSE"]) == .status("OK"))
                await admin.close()
                try await eventually("publish to finish", timeout: .seconds(20)) { !publish.isRunning }
                #expect(publish.terminationStatus == 0)
                let lines = printed.withLock { $0 }.split(separator: "\n").map(String.init)
                #expect(lines.first?.contains(#""outcome":"unknown""#) == true, "\(lines)")
                #expect(lines.last?.hasPrefix("HTTP 202") == true, "\(lines)")

                let history = try await RedisConnection.connect(to: RedisURL(parsing: redis.url))
                let entries = try await history.send(["XRANGE", "statushub:history", "-", "+"]).array ?? []
                await history.close()
                #expect(entries.count == 1)
                let body = entries.first?.array?.last?.array?.compactMap(\.text).joined(separator: " ") ?? ""
                #expect(body.contains(#""idempotency_key":"hub:"#), "\(body)")
            }
        }
    }
}

extension CommandLineTests {
    /// Runs `statushub` to its end (within a minute) and returns its exit status and what it printed, both streams.
    func finished(_ arguments: [String]) async throws -> (status: Int32, printed: String) {
        let output = Pipe()
        let process = try ChildProcess.spawn(HubProcess.executable.path, arguments, stdout: .pipe(output), stderr: .pipe(output))
        let exited = await process.exited(within: .seconds(60))
        if !exited { process.signal(SIGKILL) }
        try #require(exited, "statushub \(arguments.joined(separator: " ")) did not finish")
        return (process.terminationStatus, String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))
    }

    /// What a publisher gets wrong on the command line is said in a line: a pretty-printed object in a file is one
    /// event (it went as NDJSON and was refused line by line), a URL that is no hub's is refused at once (`ftp://`
    /// spun without end), a hub that is down is named without an error dump, `--status` without `--entity` is
    /// refused, and `simulate` against a hub that is down exits 1 (it said "failed requests" and exited 0).
    @Test func publishAndSimulateSayWhatIsWrong() async throws {
        try await withHub(engine: .memory) { hub in
            let hubURL = "http://127.0.0.1:\(hub.port)"
            let event = try JSONSerialization.jsonObject(with: Data(SampleEvents.alert("M-PRETTY").utf8))
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("pretty-\(UUID().uuidString).json")
            try JSONSerialization.data(withJSONObject: event, options: [.prettyPrinted]).write(to: file)
            defer { try? FileManager.default.removeItem(at: file) }

            let pretty = try await finished(["publish", "--url", hubURL, "--file", file.path])
            #expect(pretty.status == 0, "\(pretty.printed)")
            #expect(pretty.printed.contains("HTTP 202"))

            let ftp = try await finished(["publish", "--url", "ftp://127.0.0.1:\(hub.port)", "--entity", "machine:M-1", "--status", "idle"])
            #expect(ftp.status == 64)
            #expect(ftp.printed.contains("is not a hub's URL"))

            let closedPort = try LoopbackPort.unused()
            let down = try await finished(["publish", "--url", "http://127.0.0.1:\(closedPort)", "--entity", "machine:M-1", "--status", "idle"])
            #expect(down.status == 1)
            #expect(down.printed.contains("cannot reach http://127.0.0.1:\(closedPort)"))
            #expect(!down.printed.contains("UserInfo"))

            let statusAlone = try await finished(["publish", "--url", hubURL, "--status", "idle"])
            #expect(statusAlone.status == 64)
            #expect(statusAlone.printed.contains("give --entity too"))

            let simulated = try await finished(["simulate", "--url", "http://127.0.0.1:\(closedPort)", "--duration", "1"])
            #expect(simulated.status == 1, "\(simulated.printed)")

            // No operators asked for, none published (one was, whatever --operators said).
            let noOperators = try await finished([
                "simulate", "--url", hubURL, "--lines", "1", "--machines", "2", "--operators", "0", "--speed", "100", "--duration", "2",
            ])
            #expect(noOperators.status == 0, "\(noOperators.printed)")
            let operators = try await HTTP.get(port: hub.port, "/v1/state?pattern=line:Line-1:resource-status:operator:*").json["events"]?.arrayValue ?? []
            let machines = try await HTTP.get(port: hub.port, "/v1/state?pattern=line:Line-1:resource-status:machine:*").json["events"]?.arrayValue ?? []
            #expect(operators.isEmpty)
            #expect(machines.count == 2)
        }
    }
}
