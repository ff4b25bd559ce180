import Hummingbird
import NIOCore
import StatusHubCore

/// `GET`, `PUT` and `DELETE /v1/session`: seed 003 §4.2's user session (`UserSessions`), what a user's screens keep
/// between loads and devices — the dashboard keeps its line and filters there. One JSON object per user, the user
/// being the token's `sub`, stored whole and kept `server.session_expiry_seconds` (8 h) after its last write or read.
struct SessionController {
    let engine: any Engine
    let tokens: SubscriberTokens
    let maxBytes: Int
    let expirySeconds: Int

    func read(_ request: Request, context: some RequestContext) async throws -> Response {
        let (key, user): (String, String)
        switch await owner(of: request) {
        case .success(let owner): (key, user) = owner
        case .failure(let refusal): return refusal.response
        }
        do {
            guard let stored = try await engine.session(key: key) else {
                return JSONResponse.error(
                    .notFound, field: "session",
                    reason: "none stored for this user, or it expired (kept \(expirySeconds) s after its last use: server.session_expiry_seconds)")
            }
            return JSONResponse.bytes(answer(user: user, session: stored))
        } catch let unavailable as EngineUnavailable {
            return JSONResponse.engineUnavailable(unavailable)
        }
    }

    /// Replaces the session with the body, a JSON object of at most `server.max_session_bytes`.
    func store(_ request: Request, context: some RequestContext) async throws -> Response {
        let (key, user): (String, String)
        switch await owner(of: request) {
        case .success(let owner): (key, user) = owner
        case .failure(let refusal): return refusal.response
        }
        let tooLarge = JSONResponse.error(
            .contentTooLarge, field: "body", reason: "a session is at most \(maxBytes) bytes (server.max_session_bytes)")
        if let length = request.headers[.contentLength].flatMap(Int.init), length > maxBytes { return tooLarge }
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: maxBytes)
        } catch is NIOTooManyBytesError {
            return tooLarge
        }
        let session: [UInt8]
        switch try? JSONValue.parse(Array(body.readableBytesView)) {
        case .object(let members)?:
            // Stored as the hub writes JSON (compact, keys sorted), so what is read back is one canonical text.
            var written: [UInt8] = []
            JSONValue.object(members).write(into: &written)
            session = written
        case let other?:
            return JSONResponse.error(.badRequest, field: "body", reason: "a session must be a JSON object, got \(other.typeName)")
        case nil:
            return JSONResponse.error(.badRequest, field: "body", reason: "not valid JSON")
        }
        do {
            try await engine.storeSession(key: key, value: session)
            return JSONResponse.bytes(answer(user: user, session: session))
        } catch let unavailable as EngineUnavailable {
            return JSONResponse.engineUnavailable(unavailable)
        }
    }

    func delete(_ request: Request, context: some RequestContext) async throws -> Response {
        let key: String
        switch await owner(of: request) {
        case .success(let owner): key = owner.key
        case .failure(let refusal): return refusal.response
        }
        do {
            try await engine.storeSession(key: key, value: nil)
            return Response(status: .noContent)
        } catch let unavailable as EngineUnavailable {
            return JSONResponse.engineUnavailable(unavailable)
        }
    }

    /// `{"expires_in_seconds":…,"session":{…},"user":"…"}`, the stored bytes copied in as they are.
    private func answer(user: String, session: [UInt8]) -> [UInt8] {
        var bytes = Array(#"{"expires_in_seconds":\#(expirySeconds),"session":"#.utf8)
        bytes += session
        bytes += Array(#","user":"#.utf8)
        JSONValue.string(user).write(into: &bytes)
        bytes.append(UInt8(ascii: "}"))
        return bytes
    }

    private struct Refusal: Error {
        var response: Response
    }

    /// The session's key and its user, from the request's token: a session belongs to a user, so it needs a token
    /// that names one (`sub`), auth required or not.
    private func owner(of request: Request) async -> Result<(key: String, user: String), Refusal> {
        let subscriber: Subscriber
        switch await tokens.reader(of: request) {
        case .allowed(let found): subscriber = found
        case .refused(let response): return .failure(Refusal(response: response))
        }
        guard subscriber.expires != nil else {
            return .failure(Refusal(response: JSONResponse.error(
                .unauthorized, field: "Authorization",
                reason: "a session belongs to a user: send a token (Authorization: Bearer <JWT> or ?token=) whose 'sub' names them")))
        }
        guard let user = subscriber.user else {
            return .failure(Refusal(response: JSONResponse.error(
                .forbidden, field: "sub", reason: "this token names no user ('sub' claim): sessions are kept per user")))
        }
        guard UserSessions.isValidUser(user) else {
            return .failure(Refusal(response: JSONResponse.error(.forbidden, field: "sub", reason: "the token's 'sub' must be \(UserSessions.userRule)")))
        }
        return .success((UserSessions.key(user: user, tenant: subscriber.tenant), user))
    }
}
