import HTTPTypes
import Hummingbird
import NIOCore

/// The built-in dashboard (`Dashboard/`: one page, its script and its style sheet), served from bytes compiled into
/// the binary (`embedInCode` in Package.swift). Open like the catalog: the page holds no plant data; it asks for
/// it with the token the user gives it.
enum Dashboard {
    static func register(on router: Router<HubRequestContext>) {
        serve("/", PackageResources.index_html, type: "text/html; charset=utf-8", on: router)
        serve("/dashboard.js", PackageResources.dashboard_js, type: "text/javascript; charset=utf-8", on: router)
        serve("/dashboard.css", PackageResources.dashboard_css, type: "text/css; charset=utf-8", on: router)
    }

    /// Everything the page loads comes from the hub itself; it connects back only to the hub.
    static let contentSecurityPolicy = "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; frame-ancestors 'none'"

    private static func serve(_ path: RouterPath, _ bytes: [UInt8], type: String, on router: Router<HubRequestContext>) {
        let body = ByteBuffer(bytes: bytes)
        router.get(path) { _, _ in
            Response(
                status: .ok,
                headers: [
                    .contentType: type, .cacheControl: "no-cache", .init("Content-Security-Policy")!: contentSecurityPolicy,
                    .init("X-Content-Type-Options")!: "nosniff",
                ],
                body: ResponseBody(byteBuffer: body))
        }
    }
}
