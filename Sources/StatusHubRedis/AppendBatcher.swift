import StatusHubCore
import Synchronization

/// Group commit for ingest: the events of requests that arrive while an append script is running go to Redis
/// together, in one script call, when it returns.
///
/// At low load nothing waits (the first request finds nothing in flight and goes at once); under load, batches
/// grow by themselves. With single-event POSTs each call cost redis-server 17 µs of Lua (`INFO commandstats`) and
/// the hub a round trip (arguments, submit, reply), mostly per call rather than per event. A group never exceeds one script call (`AppendScript.chunkSize` events), so it stays atomic:
/// either every request in it is stored, or none is and all of them are told so. Requests arrive in order and keep
/// it: a group is a prefix of the queue, and its events are written in arrival order.
///
/// When a group's answer is lost (`AppendOutcomeUnknown`: a timeout, a dropped connection), each of its requests
/// gets its own slice of the resend keys, and every request queued behind it is failed at once as never sent:
/// it was not, and sending it into a Redis that just stopped answering would only make its outcome unknown too,
/// a command timeout later. So a request queued behind a hung group hears back within the command timeout of
/// its arrival, not after two.
final class AppendBatcher: Sendable {
    typealias Write = @Sendable ([ValidatedEvent]) async throws -> [AppendScript.Outcome]

    private struct Request {
        var events: [ValidatedEvent]
        var continuation: CheckedContinuation<[AppendScript.Outcome], any Error>
    }

    private struct State {
        var queue: [Request] = []
        var writing = false
    }

    private let state = Mutex(State())
    private let maxEvents: Int
    private let write: Write

    init(maxEvents: Int = AppendScript.chunkSize, write: @escaping Write) {
        self.maxEvents = max(1, maxEvents)
        self.write = write
    }

    /// Requests waiting behind the group in flight (not yet handed to Redis).
    var waitingRequests: Int { state.withLock { $0.queue.count } }

    /// The outcomes of `events`, in order, once they are stored (or the error that stored none of them).
    func append(_ events: [ValidatedEvent]) async throws -> [AppendScript.Outcome] {
        // A request as large as a whole group has nothing to share it with: it goes alone, as it always did.
        guard events.count < maxEvents else { return try await write(events) }
        return try await withCheckedThrowingContinuation { continuation in
            let startWriting = state.withLock { state -> Bool in
                state.queue.append(Request(events: events, continuation: continuation))
                guard !state.writing else { return false }
                state.writing = true
                return true
            }
            if startWriting { Task { await self.writeQueued() } }
        }
    }

    /// Writes groups until the queue is empty; only one runs at a time.
    private func writeQueued() async {
        while true {
            let group = state.withLock { state -> [Request] in
                // Every queued request has fewer than `maxEvents` events, so a non-empty queue gives at least one.
                var total = 0
                let group = Array(state.queue.prefix(while: { request in
                    total += request.events.count
                    return total <= maxEvents
                }))
                state.queue.removeFirst(group.count)
                if group.isEmpty { state.writing = false }
                return group
            }
            guard !group.isEmpty else { return }
            do {
                let events = group.flatMap(\.events)
                let outcomes = try await write(events)
                guard outcomes.count == events.count else {
                    throw RedisError.unexpectedReply("\(outcomes.count) outcomes for \(events.count) events")
                }
                var start = 0
                for request in group {
                    request.continuation.resume(returning: Array(outcomes[start..<start + request.events.count]))
                    start += request.events.count
                }
            } catch let unknown as AppendOutcomeUnknown {
                var start = 0
                for request in group {
                    let keys = Array(unknown.resendKeys[start..<start + request.events.count])
                    request.continuation.resume(throwing: AppendOutcomeUnknown(resendKeys: keys, cause: unknown.cause))
                    start += request.events.count
                }
                let queued = state.withLock { state in
                    defer { state.queue.removeAll() }
                    return state.queue
                }
                let notSent = RedisError.notSent("queued behind a call Redis did not answer (\(unknown.cause))")
                for request in queued { request.continuation.resume(throwing: notSent) }
            } catch {
                for request in group { request.continuation.resume(throwing: error) }
            }
        }
    }
}
