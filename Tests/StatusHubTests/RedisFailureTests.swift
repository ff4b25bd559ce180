import Foundation
import StatusHubCore
import StatusHubRedis
import Synchronization
import Testing

/// Redis faults done for real, seen from the hub's users: an MES posting over HTTP and a dashboard on a WebSocket.
@Suite("Redis failures, end to end")
struct RedisFailureTests {
    /// redis-server (AOF, fsync always) is killed with SIGKILL while events stream in, and restarted. Whatever
    /// ingest acknowledged must reach the dashboard — live, by the node's catch-up, or by resuming with `since`.
    @Test func redisKilledMidStreamLosesNothingAcknowledged() async throws {
        try await withRedisServer(extraArguments: ["--appendonly", "yes", "--appendfsync", "always"]) { redis in
            try await withHub(redisURL: redis.url) { hub in
                let socket = try await TestSocket(port: hub.port)
                try await socket.subscribe(["resource-status"])
                // Reads until 8 s pass without an event once the posting is over: not before, as a loaded run can take
                // that long for the first event to come (the suite in parallel once made a run 8× slower, and a
                // collector that gave up on a quiet start had nothing to resume from).
                let postingDone = Atomic<Bool>(false)
                let collector = Task { () -> [String] in
                    var received: [String] = []
                    let giveUp = ContinuousClock.now + .seconds(300)
                    while ContinuousClock.now < giveUp {
                        if let event = try? await socket.nextEvent(timeout: .seconds(8)) {
                            if let id = event["event_id"]?.stringValue { received.append(id) }
                        } else if postingDone.load(ordering: .acquiring) {
                            break
                        } else {
                            try? await Task.sleep(for: .milliseconds(100))  // a closed socket fails at once: no spinning
                        }
                    }
                    return received
                }
                var acknowledged: [String] = []
                var refused = 0
                var sawNotReady = false
                // Down from batch 20 to 35; then on until 20 batches were acknowledged after the restart (how soon
                // the hub reconnects varies with the machine's load), within a bound.
                var batch = 0
                var acknowledgedAfterRestart = 0
                let deadline = ContinuousClock.now + .seconds(30)
                while batch < 60 || (acknowledgedAfterRestart < 20 && ContinuousClock.now < deadline) {
                    defer { batch += 1 }
                    if batch == 20 { await redis.kill9() }
                    if batch == 20 { sawNotReady = (try? await HTTP.get(port: hub.port, "/ready"))?.status == 503 }
                    if batch == 35 { try await redis.restart() }
                    let reply = try await HTTP.post(port: hub.port, events: (0..<5).map { SampleEvents.machineStatus("M-\(batch)-\($0)") })
                    switch reply.status {
                    case 202:
                        acknowledged += (reply.json["accepted"]?.arrayValue ?? []).compactMap { $0["event_id"]?.stringValue }
                        if batch >= 35 { acknowledgedAfterRestart += 1 }
                    case 503:
                        refused += 1
                        #expect(reply.headers["retry-after"] != nil)
                    default: Issue.record(Comment(rawValue: "unexpected \(reply.status): \(reply.text)"))
                    }
                    try await Task.sleep(for: .milliseconds(50))
                }
                postingDone.store(true, ordering: .releasing)
                var received = await collector.value
                // Anything the live connection did not get, a resume from its last event must.
                if let last = received.last, !Set(acknowledged).isSubset(of: received) {
                    let again = try await TestSocket(port: hub.port)
                    again.send(#"{"op":"subscribe","channels":["resource-status"],"since":"\#(last)"}"#)
                    _ = try await again.next()
                    while let event = try? await again.nextEvent(timeout: .seconds(3)) {
                        if let id = event["event_id"]?.stringValue { received.append(id) }
                    }
                    _ = await again.close()
                }
                let lost = Set(acknowledged).subtracting(received)
                let duplicates = received.count - Set(received).count
                print("redis killed (AOF): acknowledged \(acknowledged.count), refused requests \(refused), received \(Set(received).count), lost \(lost.count), duplicates \(duplicates)")
                #expect(sawNotReady)
                #expect(refused > 0)
                #expect(acknowledged.count >= 200)
                #expect(lost.isEmpty)
                #expect(duplicates == 0)
            }
        }
    }

    /// A node whose Redis refuses it for good (a database index the server does not have, a wrong password) keeps
    /// trying, and `/ready` says what the server answered — it said only "not connected", the cause in the log alone.
    @Test("/ready names why Redis refused the connection", arguments: [
        ("/99", [String](), "DB index is out of range"), ("", ["--requirepass", "right"], "WRONGPASS"),
    ])
    func readyNamesWhyRedisRefused(path: String, serverArguments: [String], cause: String) async throws {
        try await withRedisServer(extraArguments: serverArguments) { redis in
            let url = redis.url.replacingOccurrences(of: "redis://", with: serverArguments.isEmpty ? "redis://" : "redis://:wrong@") + path
            try await withHub(redisURL: url, awaitReady: false) { hub in
                var ready = try await HTTP.get(port: hub.port, "/ready")
                let deadline = ContinuousClock.now + .seconds(20)
                while ready.json["error"]?["reason"]?.stringValue?.contains(cause) != true, ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(50))
                    ready = try await HTTP.get(port: hub.port, "/ready")
                }
                #expect(ready.status == 503)
                #expect(ready.json["error"]?["field"]?.stringValue == "engine")
                #expect(ready.json["error"]?["reason"]?.stringValue?.contains(cause) == true, "\(ready.text)")
                #expect(ready.text.contains("wrong") == false, "the password leaked: \(ready.text)")
            }
        }
    }

    /// A Redis at `maxmemory` with `noeviction` is connected and refuses every write: `/ready` says so (503 naming
    /// `engine`) while ingest is 503, and is 200 again once there is room.
    @Test func readyIs503WhileAFullRedisRefusesWrites() async throws {
        try await withRedisServer(extraArguments: ["--maxmemory", "4mb", "--maxmemory-policy", "noeviction"]) { redis in
            try await withHub(redisURL: redis.url) { hub in
                #expect(try await HTTP.get(port: hub.port, "/ready").status == 200)
                // Fill it from the side, the way other tenants of a shared Redis would.
                let filler = try await RedisConnection.connect(to: RedisURL(parsing: redis.url))
                // Big values first, then small ones: a refused command's own bytes leave room behind them.
                var stored = 0
                for size in [100_000, 100] {
                    let value = String(repeating: "x", count: size)
                    while stored < 100_000, try await filler.send(["SET", "filler:\(stored)", value]).errorMessage == nil { stored += 1 }
                }
                #expect(stored < 100_000, "4 MB of maxmemory never filled")

                // Redis's own buffers shrink between the refused SET and the POST now and then (a loaded CI run took
                // one write more): fill up to the brim again before each try, and expect the refusal within a few.
                var refused = try await HTTP.post(port: hub.port, event: SampleEvents.machineStatus("M-FULL"))
                for attempt in 0..<5 where refused.status != 503 {
                    while try await filler.send(["SET", "filler:\(stored)", "x"]).errorMessage == nil { stored += 1 }
                    refused = try await HTTP.post(port: hub.port, event: SampleEvents.machineStatus("M-FULL-\(attempt)"))
                }
                #expect(refused.status == 503, "\(refused.text)")
                let ready = try await HTTP.get(port: hub.port, "/ready")
                #expect(ready.status == 503)
                #expect(ready.json["error"]?["field"]?.stringValue == "engine")
                #expect(ready.json["error"]?["reason"]?.stringValue?.contains("OOM") == true, "\(ready.text)")

                _ = try await filler.send(["FLUSHDB"])
                #expect(try await HTTP.get(port: hub.port, "/ready").status == 200)
                #expect(try await HTTP.post(port: hub.port, event: SampleEvents.machineStatus("M-FULL")).status == 202)
                await filler.close()
            }
        }
    }
}

extension RedisFailureTests {
    /// A Redis that hangs after taking the write (SIGSTOP): the answer is lost, so the hub says the outcome is
    /// unknown and hands out the keys that make a resend safe; a request queued behind it was never sent, hears so
    /// within the command timeout, and its plain resend stores it once. After SIGCONT the hung write runs; the
    /// resend with the key is acknowledged as its duplicate, and history and subscriber hold each event once.
    @Test func lostAnswerIsUnknownWithKeysAndTheResendStoresOnce() async throws {
        let timeout = 8.0
        try await withRedisServer { redis in
            try await withHub(redisURL: redis.url, configure: { $0.redis.commandTimeoutSeconds = timeout }, redisHealthCheck: .seconds(120)) { hub in
                let socket = try await TestSocket(port: hub.port)
                _ = try await socket.subscribe(["machine:*"])

                // The hub's command connection is the one that ran the append script last; only its unread bytes
                // prove the hung write was sent (the hub's other connections may send in the background).
                // The sweeper and the health check use that connection too, so its last command may be theirs by the
                // time CLIENT LIST is read: post again until it is the script.
                var commandPort: Int?
                for attempt in 0..<20 where commandPort == nil {
                    #expect(try await HTTP.post(port: hub.port, event: SampleEvents.machineStatus("M-before-\(attempt)")).status == 202)
                    commandPort = try await redis.clientPort(lastRunning: "evalsha")
                }
                let port = try #require(commandPort, "no connection's last command was the append script")
                redis.pause()
                let hung = Task {
                    try await HTTP.post(port: hub.port, event: SampleEvents.machineStatus("M-hung"))
                }
                // The script call (hundreds of bytes, not a 14-byte PING) sits unread in the stopped Redis's socket.
                try await eventually("the write reached the hung Redis", timeout: .seconds(20)) { redis.unreadBytes(fromPeerPort: port) > 100 }
                let queued = Task { try await HTTP.post(port: hub.port, event: SampleEvents.machineStatus("M-queued")) }
                // Waiting behind the hung call: the condition the promise is about (on a starved machine the request
                // could otherwise reach the hub only after the call failed, and then it is simply a new request).
                let engine = try #require(hub.hub.engine as? RedisEngine)
                try await eventually("the second request waiting behind the hung call", timeout: .seconds(20)) { engine.waitingAppendRequests == 1 }
                let unknown = try await hung.value
                let queuedAnswer = try await queued.value

                #expect(unknown.status == 503)
                #expect(unknown.headers["retry-after"] != nil)
                let answer = unknown.json["error"]
                #expect(answer?["outcome"] == .string("unknown"))
                let resend = answer?["resend"]?.arrayValue ?? []
                #expect(resend.count == 1)
                #expect(resend.first?["index"] == .number(0))
                let key = try #require(resend.first?["idempotency_key"]?.stringValue)
                #expect(key.hasPrefix("hub:"))

                // Never sent: sending it into the Redis that just stopped answering would have made its outcome
                // unknown too (with resend keys), a command timeout later.
                #expect(queuedAnswer.status == 503)
                #expect(queuedAnswer.json["error"]?["outcome"] == .string("not_stored"))
                #expect(queuedAnswer.json["error"]?["resend"] == nil)

                redis.resume()
                try await eventually("ready after Redis resumed") { (try await HTTP.get(port: hub.port, "/ready")).status == 200 }
                let keyed = String(SampleEvents.machineStatus("M-hung").dropLast()) + #","idempotency_key":"\#(key)"}"#
                var stored: String?
                for attempt in 1...2 {
                    // The second resend is the retry of a retry: still the same answer.
                    let again = try await HTTP.post(port: hub.port, event: keyed)
                    #expect(again.status == 202, "resend \(attempt): \(again.text)")
                    let accepted = again.json["accepted"]?.arrayValue?.first
                    #expect(accepted?["duplicate"] == .bool(true), "resend \(attempt): \(again.text)")
                    stored = stored ?? accepted?["event_id"]?.stringValue
                    #expect(accepted?["event_id"]?.stringValue == stored)
                }
                let plain = try await HTTP.post(port: hub.port, event: SampleEvents.machineStatus("M-queued"))
                #expect(plain.status == 202)

                var received: [String: [String]] = [:]
                while let event = try? await socket.nextEvent(timeout: .seconds(2)) {
                    received[event["entity_id"]?.stringValue ?? "?", default: []].append(event["event_id"]?.stringValue ?? "?")
                }
                #expect(received["M-hung"] == [stored].compactMap { $0 })
                #expect(received["M-queued"]?.count == 1)

                let history = try await RedisConnection.connect(to: RedisURL(parsing: redis.url))
                let entries = try await history.send(["XRANGE", "statushub:history", "-", "+"])
                await history.close()
                func text(_ reply: RedisReply) -> String { reply.array.map { $0.map(text).joined(separator: " ") } ?? reply.text ?? "" }
                let bodies = (entries.array ?? []).map(text)
                #expect(bodies.count(where: { $0.contains("M-hung") }) == 1)
                #expect(bodies.count(where: { $0.contains("M-queued") }) == 1)
                print("lost answer: unknown with key \(key), queued request answered not_stored, resend duplicate of \(stored ?? "-")")
            }
        }
    }
}
