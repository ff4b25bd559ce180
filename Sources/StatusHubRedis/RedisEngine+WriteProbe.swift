import StatusHubCore

extension RedisEngine: WriteProbe {
    /// Writes a small key that expires at once, the same way an append would be refused: Redis checks `maxmemory`
    /// (`-OOM`) and read-only replicas (`-READONLY`) for any write, before running it. `INFO memory` would only
    /// approximate the check Redis makes. With `redis.min_replicas_acked` the probe asks `WAIT` as an append does:
    /// with too few replicas every event is answered 503 `unknown`, and a `/ready` of 200 hid that total outage.
    public func writeRefusal() async -> String? {
        let wanted = config.redis.minReplicasAcked
        var probe = [["SET", keys.entityTag + Self.writeProbeKey, "1", "PX", "1000"]]
        if wanted > 0 { probe.append(["WAIT", String(wanted), String(Self.replicaProbeMilliseconds)]) }
        do {
            let replies = try await commands.connection().pipeline(probe)
            if let refusal = replies.first?.errorMessage { return "Redis refuses writes: \(refusal)" }
            guard wanted > 0 else { return nil }
            let confirmed = replies.last?.integer ?? 0
            guard confirmed < wanted else { return nil }
            return "only \(confirmed) of the \(wanted) replicas required (redis.min_replicas_acked) confirmed a write within \(Self.replicaProbeMilliseconds) ms: events are answered 503 unknown"
        } catch {
            return "Redis did not answer a write: \(error)"
        }
    }

    /// Outside the keys `RedisKeys` names, and gone a second after each probe. On a Redis Cluster it carries the
    /// partition's tag, so each partition probes the master that holds its slot (untagged, every partition probed
    /// whichever master served the key's slot, and one lost master made them all unready).
    static let writeProbeKey = "statushub:ready-probe"

    /// How long the probe's `WAIT` gives the replicas: a connected replica confirms within a millisecond or two, and
    /// `/ready` answers within a load balancer's check (a partitioned node cuts each partition's probe at 500 ms).
    static let replicaProbeMilliseconds = 200
}
