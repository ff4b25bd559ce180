import HummingbirdCore
import Logging
import StatusHubCore

/// Hummingbird's accept gate (`AvailableConnectionsChannelHandler`) held at what the open-files limit leaves beside
/// the process's own descriptors (`DescriptorLimit.acceptRoom`). Past it the node stops accepting until a connection
/// closes — the kernel queues the next ones — instead of accepting until `accept` fails for want of descriptors,
/// after which a Redis or MQTT reconnection, or a SIGHUP's reading of its files, would fail too. Hummingbird's own
/// `MaximumAvailableConnections` does the counting the same way but logs only at trace; this says it at warning,
/// once each time the node fills.
struct AcceptCeiling: AvailableConnectionsDelegate {
    let limit: Int
    let descriptors: DescriptorLimit
    let logger: Logger
    private var open = 0

    init(descriptors: DescriptorLimit, logger: Logger) {
        self.limit = descriptors.acceptRoom
        self.descriptors = descriptors
        self.logger = logger
    }

    mutating func connectionOpened() {
        open += 1
        if open == limit {
            logger.warning("""
                not accepting connections: \(open) open, all the open-files limit (\(descriptors)) leaves beside the \
                node's own; the next wait in the listen queue until one closes (ulimit -n; systemd's LimitNOFILE=)
                """)
        }
    }

    mutating func connectionClosed() {
        open -= 1
    }

    func isAcceptingNewConnections() -> Bool {
        open < limit
    }
}
