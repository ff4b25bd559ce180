import Hummingbird
import StatusHubCore

extension SubscriberTokens {
    enum Reader {
        case allowed(Subscriber)
        case refused(Response)
    }

    /// The reader of an HTTP read endpoint, from `Authorization: Bearer <JWT>` or `?token=`; anonymous (default
    /// tenant) unless auth is required, a 401 naming `Authorization` when the token does not verify.
    func reader(of request: Request) async -> Reader {
        let token = Self.token(authorization: request.headers[.authorization], path: request.uri.string)
        switch await authenticate(token: token) {
        case .success(let subscriber): return .allowed(subscriber)
        case .failure(let refusal): return .refused(JSONResponse.error(.unauthorized, field: "Authorization", reason: refusal.reason))
        }
    }
}
