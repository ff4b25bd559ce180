import Foundation
import StatusHubCore
import Testing

/// `GET /v1/state` follows the subscriber rules: with auth required it needs a token, reads only the token's
/// tenant, and only what the token's patterns allow.
@Suite struct StateAccessTests {
    @Test func stateReadsNeedATokenAndStayInItsTenantAndPatterns() async throws {
        let issuer = TokenIssuer()
        try await withHub(engine: .memory, configure: try AccessControlTests.secured(issuer)) { hub in
            #expect(try await AccessControlTests.post(hub.port, key: AccessControlTests.lineKey, [SampleEvents.machineStatus("M-1", "running")]).status == 202)
            #expect(try await AccessControlTests.post(hub.port, key: AccessControlTests.acmeKey, [SampleEvents.machineStatus("M-1", "idle")]).status == 202)

            let anonymous = try await HTTP.get(port: hub.port, "/v1/state/machine/M-1")
            #expect(anonymous.status == 401)
            #expect(anonymous.json["error"]?["field"] == .string("Authorization"))

            let line2 = try await issuer.hs256(patterns: ["line:Line-2:*"])
            let mine = try await HTTP.request("GET", port: hub.port, "/v1/state/machine/M-1", contentType: nil, headers: ["Authorization": "Bearer \(line2)"])
            #expect(mine.status == 200)
            #expect(mine.json["data"]?["current_status"] == .string("running"))

            let acme = try await issuer.hs256(tenant: "acme", patterns: ["machine:*"])
            let theirs = try await HTTP.get(port: hub.port, "/v1/state/machine/M-1?token=\(acme)")
            #expect(theirs.status == 200)
            #expect(theirs.json["data"]?["current_status"] == .string("idle"))

            let operatorsOnly = try await issuer.hs256(patterns: ["operator:*"])
            let outside = try await HTTP.request("GET", port: hub.port, "/v1/state/machine/M-1", contentType: nil, headers: ["Authorization": "Bearer \(operatorsOnly)"])
            #expect(outside.status == 403)
            let wide = try await HTTP.get(port: hub.port, "/v1/state?pattern=*&token=\(operatorsOnly)")
            #expect(wide.status == 403)
            #expect(wide.json["error"]?["field"] == .string("pattern"))
            let listed = try await HTTP.get(port: hub.port, "/v1/state?pattern=machine:*&token=\(acme)")
            #expect(listed.json["events"]?.arrayValue?.count == 1)
        }
    }

    /// A token that may see no state of an entity type (allocations without `audit`) is refused whether the entity is
    /// cached or not: a 403 for a cached allocation beside a 404 for an unknown one told it which allocations exist.
    @Test func aTypeTheTokenMayNotSeeIsRefusedWhetherCachedOrNot() async throws {
        let issuer = TokenIssuer()
        try await withHub(engine: .memory, configure: try RedactionTests.secured(issuer)) { hub in
            let posted = try await HTTP.request(
                "POST", port: hub.port, "/v1/events", body: Data(RedactionTests.allocation.utf8),
                headers: ["Authorization": "Bearer \(RedactionTests.plantKey)"])
            #expect(posted.status == 202, "\(posted.text)")
            let floor = try await issuer.hs256(patterns: ["line:Line-2:*", "allocation:*"])
            for id in ["A-1", "A-never-seen"] {
                let answer = try await RedactionTests.get(hub.port, "/v1/state/allocation/\(id)", floor)
                #expect(answer.status == 403, "\(id): \(answer.text)")
                #expect(answer.json["error"]?["field"] == .string("entity_type"))
            }
            let auditor = try await issuer.hs256(patterns: ["allocation:*"], see: ["audit"])
            #expect(try await RedactionTests.get(hub.port, "/v1/state/allocation/A-1", auditor).status == 200)
            #expect(try await RedactionTests.get(hub.port, "/v1/state/allocation/A-never-seen", auditor).status == 404)
        }
    }

    /// `/v1/state/machine/..` (sent as is: clients resolve dot segments away) names no entity any event can carry:
    /// 400 naming `entity_id`, not 404 "never seen".
    @Test(arguments: [".", ".."])
    func aDotSegmentIsNoEntity(_ id: String) async throws {
        try await withHub(engine: .memory) { hub in
            let answer = try await RawSocket.offPool {
                let socket = try RawSocket(port: hub.port)
                try socket.send("GET /v1/state/machine/\(id) HTTP/1.1\r\nHost: x\r\n\r\n")
                return String(decoding: socket.read(timeout: 10) { String(decoding: $0, as: UTF8.self).contains("}}") }.bytes, as: UTF8.self)
            }
            #expect(answer.hasPrefix("HTTP/1.1 400"), "\(answer)")
            #expect(answer.contains(#""field":"entity_id""#))
        }
    }
}
