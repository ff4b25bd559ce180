import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1

/// The node's HTTP/1 child channel: `base` (`HubHTTP1Channel`: HTTP/1 with the WebSocket upgrade) plus what it leaves
/// open: `RequestHeadDeadline` in front of the decoder (a first request head within `deadline`) and
/// `HTTP1ConnectionGuard` right behind it (malformed requests answered and closed, connections that do not keep
/// alive ended after their response, `100 Continue`). A connection the accept gate did not count is counted against
/// the open-files limit here (`AcceptCeiling`); one whose set-up fails is never handled, and is uncounted here.
struct GuardedHTTP1Channel<Base: ServerChildChannel>: ServerChildChannel {
    typealias Value = Base.Value
    let base: Base
    let deadline: TimeAmount
    let maxBodyBytes: Int
    let decoderLimits: HTTP1Channel.Configuration.DecoderConfiguration
    let ceiling: AcceptCeiling

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        ceiling.settingUp(channel, logger: logger)
        return channel.eventLoop.makeCompletedFuture {
            // Behind TLS when there is TLS (the TLS channel adds its handler before calling this), so it sees the
            // decrypted request bytes.
            try channel.pipeline.syncOperations.addHandler(RequestHeadDeadline(deadline: deadline))
        }.flatMap {
            base.setup(channel: channel, logger: logger)
        }.flatMapThrowing { [deadline, maxBodyBytes, decoderLimits] value in
            let decoder = try channel.pipeline.syncOperations.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self)
            try channel.pipeline.syncOperations.addHandler(
                HTTP1ConnectionGuard(maxBodyBytes: maxBodyBytes, linger: deadline, decoderLimits: decoderLimits),
                position: .after(decoder))
            return value
        }.flatMapErrorThrowing { [ceiling] error in
            ceiling.closed()
            throw error
        }
    }

    func handle(value: Value, logger: Logger) async {
        await base.handle(value: value, logger: logger)
    }
}
