import HTTPTypes
import Hummingbird

/// The answer to a request no route takes, in the hub's error shape: 404 naming the path when no endpoint has it,
/// 405 with `Allow` when endpoints have the path under other methods (`GET /v1/events`). Hummingbird's own answer
/// to both is an empty 404, which tells a client neither which part of its request was wrong nor what would do.
///
/// Added to the router after every route, so that it wraps only Hummingbird's not-found responder (a router's
/// middleware applies to the endpoints added after it, and always to the not-found responder); a route that
/// answers 404 itself (no cached state for an entity) is left alone.
struct UnknownRouteAnswer<Context: RequestContext>: RouterMiddleware {
    /// Every route's path and method (Hummingbird's `RouteDescription` is not `Sendable`).
    private let routes: [(path: RouterPath, method: HTTPRequest.Method)]

    init(routes: [Router<Context>.RouteDescription]) {
        self.routes = routes.map { ($0.path, $0.method) }
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as HTTPError where error.status == .notFound {
            return answer(method: request.method, path: request.uri.path)
        }
    }

    private func answer(method: HTTPRequest.Method, path: String) -> Response {
        let segments = path.split(separator: "/", omittingEmptySubsequences: true)
        let allowed = routes.filter { Self.matches($0.path, segments) }.map(\.method)
        let shownPath = String(path.prefix(128))
        let response: Response
        if allowed.isEmpty {
            response = JSONResponse.error(
                .notFound, field: "path", reason: "no endpoint at \(shownPath); the endpoints are listed in docs/protocol.md")
        } else {
            let names = allowed.map(\.rawValue).sorted().joined(separator: ", ")
            response = JSONResponse.error(
                .methodNotAllowed, field: "method",
                reason: "\(method.rawValue.prefix(32)) is not allowed on \(shownPath); allowed: \(names)", headers: [.allow: names])
        }
        // An answer to HEAD carries no body.
        return method == .head ? Response(status: response.status, headers: response.headers) : response
    }

    private static func matches(_ path: RouterPath, _ segments: [Substring]) -> Bool {
        path.components.count == segments.count && zip(path.components, segments).allSatisfy { $0 ~= $1 }
    }
}
