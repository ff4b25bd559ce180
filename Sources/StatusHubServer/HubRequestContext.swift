import Hummingbird
import NIOCore

/// The request context of the hub's routes: Hummingbird's basic one plus the channel, which a long-lived response
/// (`GET /v1/sse`) needs for the connection limits (the client's address) and to cut a client that stopped reading.
public struct HubRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    let channel: any Channel

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }
}
