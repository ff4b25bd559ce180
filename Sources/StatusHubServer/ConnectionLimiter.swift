import StatusHubCore
import Synchronization

/// Open WebSocket connections and SSE streams, in total and per client address (`server.max_connections`,
/// `server.max_connections_per_address`). A connection is counted from the upgrade decision to the end of its
/// session. The total is also held below what the process's open-files limit leaves room for
/// (`DescriptorLimit.subscriberRoom`), so a node whose limit is lower than its config says refuses the next
/// dashboard with "node full" instead of running out of descriptors for it, its publishers and Redis.
final class ConnectionLimiter: Sendable {
    enum Refusal: Sendable, Equatable {
        /// 503: the node is full.
        case total(Int)
        /// 429: this address holds its share.
        case perAddress(Int)
    }

    private struct State {
        var total = 0
        var byAddress: [String: Int] = [:]
    }

    /// The total in force: `server.max_connections`, or less when the descriptor limit leaves less room.
    let maxTotal: Int
    /// The descriptor limit, when it set `maxTotal` (nil: the config did).
    let totalSetBy: DescriptorLimit?
    private let maxPerAddress: Int
    private let state = Mutex(State())

    init(limits: HubConfig.Server, descriptors: DescriptorLimit) {
        if descriptors.subscriberRoom < limits.maxConnections {
            maxTotal = descriptors.subscriberRoom
            totalSetBy = descriptors
        } else {
            maxTotal = limits.maxConnections
            totalSetBy = nil
        }
        maxPerAddress = limits.maxConnectionsPerAddress
    }

    /// Counts a connection from `address`, or says which limit it is over.
    func acquire(_ address: String) -> Refusal? {
        state.withLock { state in
            if state.total >= maxTotal { return .total(maxTotal) }
            if maxPerAddress > 0, state.byAddress[address, default: 0] >= maxPerAddress { return .perAddress(maxPerAddress) }
            state.total += 1
            state.byAddress[address, default: 0] += 1
            return nil
        }
    }

    /// What `acquire` would say now, without counting (for the HTTP answer to a refused upgrade).
    func check(_ address: String) -> Refusal? {
        state.withLock { state in
            if state.total >= maxTotal { return .total(maxTotal) }
            if maxPerAddress > 0, state.byAddress[address, default: 0] >= maxPerAddress { return .perAddress(maxPerAddress) }
            return nil
        }
    }

    func release(_ address: String) {
        state.withLock { state in
            state.total -= 1
            let left = state.byAddress[address, default: 1] - 1
            state.byAddress[address] = left > 0 ? left : nil
        }
    }
}
