import StatusHubCore
import Synchronization

/// History pages for resumes, a few on the read connection at a time, shared by callers waiting for the same page.
///
/// After a node restarts, every subscriber it had comes back within seconds and resumes with `since`, most of them
/// from the same few positions (the last events each saw before the restart). Sent as they came, thousands of
/// pipelined reads queued on the one read connection, and those at the back outlived
/// `redis.command_timeout_seconds` behind the others: the subscriber got `unavailable`, then a resync it did not
/// need. Here at most `maxSending` reads are on the connection; the rest wait in the node, untimed, in arrival
/// order, and callers asking for the same page (position and size) while it waits get the one read's answer.
///
/// A read that fails for want of Redis (a timeout, a dropped or refused connection) is tried again until
/// `retryWithinSeconds` has passed since its first try: it is idempotent, thousands of resumes may be waiting on
/// it, and in a storm the likeliest cause is the node's own starved event loops, which pass. Only then is every
/// waiter told (and each resumes with `resync`).
///
/// A caller joins only a read that has not been sent: one already sent may have been answered before this caller's
/// live subscription began, and an event appended in between would then be in neither the page nor the live stream.
///
/// Hand-written rather than taken from a library: the listed ones (NIO, swift-async-algorithms) offer neither an
/// async semaphore nor a keyed single-flight, and the two must share one lock to keep the rule above.
final class SharedHistoryReads: Sendable {
    struct Page: Hashable, Sendable {
        let after: EventID
        let limit: Int
    }

    private typealias Waiter = CheckedContinuation<HistoryPage, any Error>

    private struct Queue {
        var sending = 0
        var waiters: [Page: [Waiter]] = [:]
        var order: [Page] = []
        var head = 0

        /// The oldest waiting page and everyone waiting for it; nil (and one sender fewer) when none waits.
        mutating func next() -> (Page, [Waiter])? {
            guard head < order.count else {
                sending -= 1
                order.removeAll(keepingCapacity: true)
                head = 0
                return nil
            }
            let page = order[head]
            head += 1
            if head > 1024, head * 2 > order.count {
                order.removeFirst(head)
                head = 0
            }
            return (page, waiters.removeValue(forKey: page) ?? [])
        }
    }

    /// Enough to keep the connection busy while an answer is decoded; few enough that the last read sent is
    /// answered well inside the command timeout even when each returns a full page.
    static let defaultMaxSending = 4

    private let maxSending: Int
    private let retryWithin: Duration
    private let read: @Sendable (Page) async throws -> HistoryPage
    private let queue = Mutex(Queue())

    init(
        maxSending: Int = defaultMaxSending, retryWithinSeconds: Double,
        read: @escaping @Sendable (Page) async throws -> HistoryPage
    ) {
        self.maxSending = max(1, maxSending)
        self.retryWithin = .milliseconds(Int64(max(0, retryWithinSeconds) * 1000))
        self.read = read
    }

    func page(after id: EventID, limit: Int) async throws -> HistoryPage {
        let page = Page(after: id, limit: limit)
        return try await withCheckedThrowingContinuation { (waiter: Waiter) in
            let sendNow = queue.withLock { queue -> Bool in
                if queue.waiters[page] != nil {
                    queue.waiters[page]!.append(waiter)
                    return false
                }
                if queue.sending < maxSending {
                    queue.sending += 1
                    return true
                }
                queue.waiters[page] = [waiter]
                queue.order.append(page)
                return false
            }
            if sendNow { startSender(with: page, for: [waiter]) }
        }
    }

    /// One of at most `maxSending` senders: reads its page, answers everyone waiting for it, then takes the oldest
    /// waiting page until none is left.
    private func startSender(with page: Page, for waiters: [Waiter]) {
        Task {
            var current: (page: Page, waiters: [Waiter])? = (page, waiters)
            while let (page, waiters) = current {
                let answer = await readRetrying(page)
                for waiter in waiters { waiter.resume(with: answer) }
                current = queue.withLock { $0.next() }
            }
        }
    }

    private func readRetrying(_ page: Page) async -> Result<HistoryPage, any Error> {
        let giveUp = ContinuousClock.now + retryWithin
        while true {
            do {
                return .success(try await read(page))
            } catch {
                guard let pause = Self.pauseBeforeRetry(after: error), ContinuousClock.now + pause < giveUp else {
                    return .failure(error)
                }
                try? await Task.sleep(for: pause)
            }
        }
    }

    /// How long to wait before reading again after `error`; nil when reading again cannot help (Redis answered,
    /// but not with a history page).
    static func pauseBeforeRetry(after error: any Error) -> Duration? {
        switch error as? RedisError {
        case .notConnected(let seconds)?: .milliseconds(Int64(max(0.01, seconds) * 1000))
        case .timeout?, .connectionClosed?, .connectFailed?, .notSent?: .milliseconds(50)
        // A Redis Cluster moved the partition's slot: the reply sent the connection to the slot's new master (its
        // `onMoved`), where the same read finds the history. Without this a resume after a reshard was answered
        // `unavailable` and `resync`, once for every moved partition.
        case .reply(let message)? where message.hasPrefix("MOVED "): .milliseconds(10)
        default: nil
        }
    }
}
