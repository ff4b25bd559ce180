import Hummingbird
import StatusHubCore

/// `GET /v1/catalog`: the loaded catalog as JSON (`Catalog.json`). It holds no tenant data, so it needs no more
/// than any read: nothing while auth is optional, a valid subscriber token (any tenant, any patterns) while
/// `auth.required`, as `/v1/state` does.
struct CatalogController {
    let tokens: SubscriberTokens
    /// Encoded once: the catalog does not change while the hub runs.
    let body: [UInt8]

    init(catalog: Catalog, cacheTTL: HubConfig.CacheTTL, tokens: SubscriberTokens) {
        self.tokens = tokens
        var bytes: [UInt8] = []
        catalog.json(ttlSeconds: cacheTTL.seconds(for:)).write(into: &bytes)
        body = bytes
    }

    func handle(_ request: Request, context: some RequestContext) async throws -> Response {
        let token = SubscriberTokens.token(authorization: request.headers[.authorization], path: request.uri.string)
        if case .failure(let refusal) = await tokens.authenticate(token: token) {
            return JSONResponse.error(.unauthorized, field: "Authorization", reason: refusal.reason)
        }
        return JSONResponse.bytes(body)
    }
}
