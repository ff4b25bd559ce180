import ArgumentParser
import Foundation
import NIOCore
import StatusHubCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket
import Synchronization

/// `statushub-load churn`: opens and closes WebSocket connections one after another (a dashboard fleet that
/// reconnects all day) and reports the hub's resident memory every `--report-every` connections, after letting it
/// settle. A hub that frees what a closed connection held stays flat after its allocator has warmed up; one that
/// keeps something per connection grows by that much per connection, for ever.
struct ChurnCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "churn",
        abstract: "Open and close WebSocket connections; report the hub's RSS as they pile up.",
        discussion: """
            Opens --connections WebSocket connections to --url's /v1/ws, --concurrency at a time. Each one \
            subscribes (--subscribe; empty: sends nothing), waits for 'subscribed', and leaves as --goodbye says: \
            'close' sends a close frame (1000) and waits for the hub to close the socket, 'reset' drops the TCP \
            connection without a close frame (SO_LINGER 0: a reset), 'mixed' alternates. Every --report-every \
            connections it waits --settle seconds and reads the RSS (and open file descriptors) of --hub-pid.

            Exit status: 0 when every connection was upgraded (and subscribed); 1 otherwise.

            Example:
              statushub-load churn --url http://127.0.0.1:8080 --connections 20000 --hub-pid 1234
            """
    )

    enum Goodbye: String, ExpressibleByArgument, Sendable {
        case close, reset, mixed
    }

    @Option(help: "Hub base URL (HTTP); connections go to ws://…/v1/ws.")
    var url = "http://127.0.0.1:8080"

    @Option(help: "Connections to open and close in all.")
    var connections = 20_000

    @Option(help: "Connections open at the same time.")
    var concurrency = 50

    @Option(help: "How each connection ends: close, reset or mixed.")
    var goodbye: Goodbye = .mixed

    @Option(help: "Pattern each connection subscribes to before it leaves (empty: it sends no message).")
    var subscribe = "alerts"

    @Option(help: "Read the hub's RSS every this many connections.")
    var reportEvery = 5_000

    @Option(help: "Seconds to wait before each reading, for closes in flight to finish.")
    var settle: Double = 3

    @Option(name: .customLong("hub-pid"), help: "The hub process to watch (RSS, open descriptors).")
    var hubPID: Int32?

    @Option(help: "Seconds one connection may take, from connect to closed.")
    var connectionTimeout: Double = 10

    @Option(help: "Write the readings as JSON to this file.")
    var json: String?

    func validate() throws {
        guard connections >= 1, concurrency >= 1, reportEvery >= 1 else {
            throw ValidationError("--connections, --concurrency and --report-every must be >= 1")
        }
        guard settle >= 0, connectionTimeout > 0 else { throw ValidationError("--settle must be >= 0, --connection-timeout > 0") }
        guard let parsed = URL(string: url), parsed.scheme == "http", parsed.host != nil else {
            throw ValidationError("--url must be http://host[:port]")
        }
    }

    struct Reading: Codable {
        var connections: Int
        var rss_mib: Double
        var open_fds: Int
        var failed: Int
    }

    struct Result: Codable {
        var url: String
        var goodbye: String
        var subscribe: String
        var concurrency: Int
        var readings: [Reading]
        /// RSS growth from the first reading after warm-up (the first `--report-every`) to the last, per 1,000
        /// connections.
        var kib_per_1000_after_warmup: Double?
        var failed: Int
        var first_failure: String?
    }

    func run() async throws {
        let parsed = URL(string: url)!
        let host = parsed.host!
        let port = parsed.port ?? 80
        let group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, CPUAffinity.allowedCPUs()))
        defer { group.shutdownGracefully { _ in } }
        let probe = hubPID.map { HubProbe(pids: [$0]) }
        let failures = FailureLog()
        let message = subscribe.isEmpty ? nil : #"{"op":"subscribe","id":"c","channels":["\#(subscribe)"]}"#

        func reading(after count: Int) -> Reading {
            let rss = probe.map { Double($0.read().rssBytes) / 1_048_576 } ?? 0
            let fds = hubPID.map { (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\($0)/fd").count) ?? -1 } ?? -1
            return Reading(connections: count, rss_mib: (rss * 10).rounded() / 10, open_fds: fds, failed: failures.count)
        }
        func show(_ reading: Reading) {
            FileHandle.standardOutput.write(Data(String(
                format: "%9d connections  rss %8.1f MiB  hub fds %5d  failed %d\n",
                reading.connections, reading.rss_mib, reading.open_fds, reading.failed).utf8))
        }

        var readings = [reading(after: 0)]
        show(readings[0])
        var done = 0
        while done < connections {
            let chunk = min(reportEvery, connections - done)
            let next = NextIndex(done)
            let end = done + chunk
            try await withThrowingTaskGroup(of: Void.self) { workers in
                for _ in 0..<min(concurrency, chunk) {
                    workers.addTask { [goodbye, connectionTimeout] in
                        while true {
                            let index = next.take()
                            guard index < end else { return }
                            let leaving: Goodbye = goodbye == .mixed ? (index % 2 == 0 ? .close : .reset) : goodbye
                            do {
                                try await ChurnConnection.cycle(
                                    host: host, port: port, subscribe: message, goodbye: leaving,
                                    timeout: .milliseconds(Int64(connectionTimeout * 1000)), loop: group.next())
                            } catch {
                                failures.record("connection \(index): \(error)")
                            }
                        }
                    }
                }
                try await workers.waitForAll()
            }
            done = end
            try await Task.sleep(for: .milliseconds(Int64(settle * 1000)))
            readings.append(reading(after: done))
            show(readings.last!)
        }

        var slope: Double?
        if readings.count >= 3, let warm = readings.dropFirst().first, let last = readings.last, last.connections > warm.connections {
            slope = (last.rss_mib - warm.rss_mib) * 1024 / Double(last.connections - warm.connections) * 1000
            print(String(format: "rss growth after the first %d: %.1f KiB per 1,000 connections", warm.connections, slope!))
        }
        if let failure = failures.first { print("first failure: \(failure)") }
        if let json {
            let result = Result(
                url: url, goodbye: goodbye.rawValue, subscribe: subscribe, concurrency: concurrency, readings: readings,
                kib_per_1000_after_warmup: slope.map { ($0 * 10).rounded() / 10 }, failed: failures.count,
                first_failure: failures.first)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            try encoder.encode(result).write(to: URL(fileURLWithPath: json))
        }
        if failures.count > 0 { throw ExitCode(1) }
    }
}

/// Hands out connection numbers to the workers.
final class NextIndex: Sendable {
    private let next: Atomic<Int>
    init(_ first: Int) { next = Atomic(first) }
    func take() -> Int { next.add(1, ordering: .relaxed).oldValue }
}

/// Counts failed connections and keeps the first one's reason.
final class FailureLog: Sendable {
    private let state = Mutex<(count: Int, first: String?)>((0, nil))
    func record(_ failure: String) { state.withLock { $0.count += 1; if $0.first == nil { $0.first = failure } } }
    var count: Int { state.withLock { $0.count } }
    var first: String? { state.withLock { $0.first } }
}

/// One connection's life at the NIO level: upgrade, optional subscribe, then the goodbye.
enum ChurnConnection {
    struct Failed: Error, CustomStringConvertible {
        var description: String
    }

    static func cycle(
        host: String, port: Int, subscribe: String?, goodbye: ChurnCommand.Goodbye, timeout: TimeAmount, loop: any EventLoop
    ) async throws {
        let subscribed = loop.makePromise(of: Void.self)
        let closed = loop.makePromise(of: Void.self)
        @Sendable func connect() async throws -> (any Channel, Bool) {
            try await ClientBootstrap(group: loop)
                .connectTimeout(timeout)
                .connect(host: host, port: port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let upgrader = NIOTypedWebSocketClientUpgrader<Bool>(maxFrameSize: 1 << 20) { channel, _ in
                            channel.eventLoop.makeCompletedFuture {
                                try channel.pipeline.syncOperations.addHandler(Watcher(subscribed: subscribed, closed: closed))
                                return true
                            }
                        }
                        var headers = HTTPHeaders()
                        headers.add(name: "Host", value: "\(host):\(port)")
                        let configuration = NIOTypedHTTPClientUpgradeConfiguration<Bool>(
                            upgradeRequestHead: HTTPRequestHead(version: .http1_1, method: .GET, uri: "/v1/ws", headers: headers),
                            upgraders: [upgrader],
                            notUpgradingCompletionHandler: { channel in channel.eventLoop.makeSucceededFuture(false) })
                        let result = try channel.pipeline.syncOperations.configureUpgradableHTTPClientPipeline(
                            configuration: .init(upgradeConfiguration: configuration))
                        return result.map { (channel, $0) }
                    }
                }
                .get()
        }
        let upgraded: (any Channel, Bool)
        do {
            upgraded = try await connect()
        } catch {
            // Never left unfulfilled (NIO reports a leaked promise).
            subscribed.fail(error)
            closed.fail(error)
            throw error
        }
        let channel = upgraded.0
        let watchdog = loop.scheduleTask(in: timeout) {
            subscribed.fail(Failed(description: "timed out"))
            closed.fail(Failed(description: "timed out"))
            channel.close(promise: nil)
        }
        defer { watchdog.cancel() }
        guard upgraded.1 else {
            channel.close(promise: nil)
            subscribed.fail(Failed(description: "not upgraded"))
            closed.fail(Failed(description: "not upgraded"))
            throw Failed(description: "not upgraded")
        }
        if let subscribe {
            try await channel.writeAndFlush(
                WebSocketFrame(fin: true, opcode: .text, maskKey: .random(), data: channel.allocator.buffer(string: subscribe)))
            try await subscribed.futureResult.get()
        }
        switch goodbye {
        case .close, .mixed:
            var code = channel.allocator.buffer(capacity: 2)
            code.write(webSocketErrorCode: .normalClosure)
            try await channel.writeAndFlush(WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: .random(), data: code))
            // The hub answers the close frame and closes the socket.
            try await closed.futureResult.get()
        case .reset:
            try await (channel as? any SocketOptionProvider)?.setSoLinger(linger(l_onoff: 1, l_linger: 0)).get()
            try await channel.close()
        }
    }

    /// Completes `subscribed` on the hub's reply, `closed` when the socket closes.
    final class Watcher: ChannelInboundHandler {
        typealias InboundIn = WebSocketFrame
        private let subscribed: EventLoopPromise<Void>
        private let closed: EventLoopPromise<Void>

        init(subscribed: EventLoopPromise<Void>, closed: EventLoopPromise<Void>) {
            self.subscribed = subscribed
            self.closed = closed
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let frame = unwrapInboundIn(data)
            if frame.opcode == .text {
                let text = String(buffer: frame.unmaskedData)
                if text.contains(#""op":"subscribed""#) {
                    subscribed.succeed(())
                } else {
                    subscribed.fail(ChurnConnection.Failed(description: "hub answered: \(text)"))
                }
            }
        }

        func channelInactive(context: ChannelHandlerContext) {
            subscribed.fail(ChurnConnection.Failed(description: "closed before subscribed"))
            closed.succeed(())
            context.fireChannelInactive()
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }
    }
}
