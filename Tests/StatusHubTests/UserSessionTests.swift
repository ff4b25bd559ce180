import Foundation
import StatusHubCore
import Testing

/// Seed 003 §4.2's `session:{user_id}` (8 hours: preferences, active filters): `GET`, `PUT` and `DELETE /v1/session`,
/// one JSON object per user the token names (`sub`), on every engine.
@Suite("User sessions")
struct UserSessionTests {
    static func session(_ port: Int, _ method: String, token: String?, body: String? = nil) async throws -> HTTPReply {
        try await HTTP.request(
            method, port: port, "/v1/session", body: body.map { Data($0.utf8) },
            headers: token.map { ["Authorization": "Bearer \($0)"] } ?? [:])
    }

    static func openNode(_ config: inout HubConfig) {
        config.auth.jwtHs256Secret = TokenIssuer.secret
    }

    /// Stored, read back, replaced, kept apart per user and per tenant, deleted; on a cluster the key lands in its
    /// partition's slot (a command on another slot would be refused `MOVED`/`CROSSSLOT`).
    @Test(arguments: ContractEngine.allCases)
    func aUsersSessionIsKeptAndTheirsAlone(engine: ContractEngine) async throws {
        let issuer = TokenIssuer()
        let alice = try await issuer.hs256(patterns: ["*"], user: "alice")
        let bob = try await issuer.hs256(patterns: ["*"], user: "bob")
        let acmeAlice = try await issuer.hs256(tenant: "acme", patterns: ["*"], user: "alice")
        try await withHub(on: engine, configure: Self.openNode) { hub in
            #expect(try await Self.session(hub.port, "GET", token: alice).status == 404)
            let stored = try await Self.session(hub.port, "PUT", token: alice, body: #"{"line":"Line-2","filter":"data.severity = 'high'","patterns":"alerts"}"#)
            #expect(stored.status == 200, "\(stored.text)")
            let read = try await Self.session(hub.port, "GET", token: alice)
            #expect(read.status == 200, "\(read.text)")
            #expect(read.json["user"] == .string("alice"))
            #expect(read.json["expires_in_seconds"] == .number(28_800))
            #expect(read.json["session"] == .object([
                "line": .string("Line-2"), "filter": .string("data.severity = 'high'"), "patterns": .string("alerts"),
            ]))
            // Another user, and the same user name in another tenant, have none of it.
            #expect(try await Self.session(hub.port, "GET", token: bob).status == 404)
            #expect(try await Self.session(hub.port, "GET", token: acmeAlice).status == 404)
            #expect(try await Self.session(hub.port, "PUT", token: acmeAlice, body: #"{"line":"Line-9"}"#).status == 200)
            #expect(try await Self.session(hub.port, "GET", token: alice).json["session"]?["line"] == .string("Line-2"))
            // A write replaces the whole object.
            #expect(try await Self.session(hub.port, "PUT", token: alice, body: #"{"line":"Line-3"}"#).status == 200)
            #expect(try await Self.session(hub.port, "GET", token: alice).json["session"] == .object(["line": .string("Line-3")]))
            let deleted = try await Self.session(hub.port, "DELETE", token: alice)
            #expect(deleted.status == 204)
            #expect(try await Self.session(hub.port, "GET", token: alice).status == 404)
            #expect(try await Self.session(hub.port, "GET", token: acmeAlice).json["session"]?["line"] == .string("Line-9"))
        }
    }

    /// Kept `server.session_expiry_seconds` after its last write or read: a screen in use keeps it, one left alone
    /// loses it. Each expectation is made only when the request's send and answer times decide it (a request is
    /// executed between the two), so a starved run retries instead of failing on its own slowness: with the read at
    /// 2 s moving the expiry on, a read past the first write's expiry still finds the session. The expiry is 4 s, and
    /// six tries are allowed: with 3 s and three, a full run on two cores found every try too slow to tell (both
    /// engines, in the suite's first minute, when dozens of servers start at once).
    @Test(arguments: [ContractEngine.memory, .redis])
    func aSessionExpiresAfterItsLastUse(engine: ContractEngine) async throws {
        let alice = try await TokenIssuer().hs256(patterns: ["*"], user: "alice")
        let expiry = Duration.seconds(4)
        try await withHub(on: engine, configure: { config in
            Self.openNode(&config)
            config.server.sessionExpirySeconds = 4
        }) { hub in
            let clock = ContinuousClock()
            var kept = false
            for _ in 0..<6 where !kept {
                let putSent = clock.now
                #expect(try await Self.session(hub.port, "PUT", token: alice, body: #"{"line":"Line-2"}"#).status == 200)
                let putAnswered = clock.now
                try await Task.sleep(for: .seconds(2))
                let readSent = clock.now
                let read = try await Self.session(hub.port, "GET", token: alice)
                guard clock.now - putSent < expiry else { continue }  // too slow to tell: again
                #expect(read.status == 200, "\(read.text)")
                // Past the write's own expiry, inside the read's.
                try await Task.sleep(until: putAnswered + expiry + .milliseconds(500))
                let again = try await Self.session(hub.port, "GET", token: alice)
                guard clock.now - readSent < expiry else { continue }
                #expect(again.status == 200, "the read at 2 s kept it: \(again.text)")
                kept = true
                try await Task.sleep(until: clock.now + expiry + .milliseconds(500))
                let gone = try await Self.session(hub.port, "GET", token: alice)
                #expect(gone.status == 404)
                #expect(gone.json["error"]?["field"] == .string("session"))
                #expect(gone.text.contains("server.session_expiry_seconds"), "\(gone.text)")
            }
            #expect(kept, "six tries, each too slow to tell")
        }
    }

    /// Who has no session and what is no session, each named.
    @Test func refusalsNameTheFieldAndTheReason() async throws {
        let issuer = TokenIssuer()
        let alice = try await issuer.hs256(patterns: ["*"], user: "alice")
        let nobody = try await issuer.hs256(patterns: ["*"])
        let control = try await issuer.hs256(patterns: ["*"], user: "al\u{7}ice")
        try await withHub(engine: .memory, configure: { config in
            Self.openNode(&config)
            config.server.maxSessionBytes = 64
        }) { hub in
            for (token, status, field) in [(nil, 401, "Authorization"), (nobody, 403, "sub"), (control, 403, "sub"), ("not.a.jwt", 401, "Authorization")] {
                for method in ["GET", "PUT", "DELETE"] {
                    let reply = try await Self.session(hub.port, method, token: token, body: method == "PUT" ? "{}" : nil)
                    #expect(reply.status == status, "\(method) \(String(describing: token)): \(reply.text)")
                    #expect(reply.json["error"]?["field"] == .string(field), "\(method): \(reply.text)")
                }
            }
            for (body, status, reason) in [
                ("[1,2]", 400, "must be a JSON object, got array"), ("{\"line\":", 400, "not valid JSON"),
                (#"{"filter":"\#(String(repeating: "x", count: 80))"}"#, 413, "at most 64 bytes (server.max_session_bytes)"),
            ] {
                let reply = try await Self.session(hub.port, "PUT", token: alice, body: body)
                #expect(reply.status == status, "\(body): \(reply.text)")
                #expect(reply.json["error"]?["field"] == .string("body"))
                #expect(reply.text.contains(reason), "\(reply.text)")
            }
            #expect(try await Self.session(hub.port, "GET", token: alice).status == 404, "nothing refused was stored")
            let wrongMethod = try await HTTP.request("POST", port: hub.port, "/v1/session", body: Data("{}".utf8))
            #expect(wrongMethod.status == 405)
            #expect(wrongMethod.headers["allow"] == "DELETE, GET, PUT")
        }
        // A node that requires tokens refuses none differently.
        try await withHub(engine: .memory, configure: { config in
            Self.openNode(&config)
            config.auth.required = true
        }) { hub in
            let anonymous = try await Self.session(hub.port, "GET", token: nil)
            #expect(anonymous.status == 401, "\(anonymous.text)")
            let stored = try await Self.session(hub.port, "PUT", token: alice, body: "{}")
            #expect(stored.status == 200, "\(stored.text)")
        }
    }
}
