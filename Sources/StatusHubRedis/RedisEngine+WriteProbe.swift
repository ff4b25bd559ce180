import StatusHubCore

extension RedisEngine: WriteProbe {
    /// Writes a small key that expires at once, the same way an append would be refused: Redis checks `maxmemory`
    /// (`-OOM`) and read-only replicas (`-READONLY`) for any write, before running it. `INFO memory` would only
    /// approximate the check Redis makes. With `redis.min_replicas_acked` it also counts the replicas that would
    /// confirm an append's `WAIT`: with too few every event is answered 503 `unknown`, and a `/ready` of 200 hid that
    /// total outage.
    ///
    /// The replicas are counted from `INFO replication` — online, and acknowledging within `replicaMaxLagSeconds` —
    /// rather than by a `WAIT` of the probe's own: a replica confirms each second unasked, so its `lag` says whether it
    /// is there, while a short `WAIT` on a loaded node missed healthy replicas now and then, and a readiness probe that
    /// fails under load takes the node out of its balancer exactly when it is busiest.
    public func writeRefusal() async -> String? {
        let wanted = config.redis.minReplicasAcked
        var probe = [["SET", keys.entityTag + Self.writeProbeKey, "1", "PX", "1000"]]
        if wanted > 0 { probe.append(["INFO", "replication"]) }
        do {
            let replies = try await commands.connection().pipeline(probe)
            if let refusal = replies.first?.errorMessage { return "Redis refuses writes: \(refusal)" }
            guard wanted > 0 else { return nil }
            guard let info = replies.last?.text else { return "Redis answered INFO replication with \(String(describing: replies.last))" }
            let acknowledging = Self.acknowledgingReplicas(info: info)
            guard acknowledging < wanted else { return nil }
            return "only \(acknowledging) of the \(wanted) replicas required (redis.min_replicas_acked) are online and acknowledging "
                + "(INFO replication: lag ≤ \(Self.replicaMaxLagSeconds) s): events are answered 503 unknown"
        } catch {
            return "Redis did not answer a write: \(error)"
        }
    }

    /// The replicas `INFO replication` lists as `state=online` with a `lag` (seconds since their last acknowledgement)
    /// of at most `replicaMaxLagSeconds`: `slave0:ip=127.0.0.1,port=6380,state=online,offset=1234,lag=0`.
    public static func acknowledgingReplicas(info: String) -> Int {
        info.split(whereSeparator: \.isNewline).count { line in
            // `slave0:` … but not a replica's own `slave_read_only:1`.
            guard line.hasPrefix("slave"), let colon = line.firstIndex(of: ":") else { return false }
            let number = line[line.index(line.startIndex, offsetBy: 5)..<colon]
            guard !number.isEmpty, number.allSatisfy(\.isNumber) else { return false }
            var fields: [Substring: Substring] = [:]
            for pair in line[line.index(after: colon)...].split(separator: ",") {
                let parts = pair.split(separator: "=", maxSplits: 1)
                if parts.count == 2 { fields[parts[0]] = parts[1] }
            }
            guard fields["state"] == "online", let lag = fields["lag"].flatMap({ Int($0) }) else { return false }
            return lag <= replicaMaxLagSeconds
        }
    }

    /// Outside the keys `RedisKeys` names, and gone a second after each probe. On a Redis Cluster it carries the
    /// partition's tag, so each partition probes the master that holds its slot (untagged, every partition probed
    /// whichever master served the key's slot, and one lost master made them all unready).
    static let writeProbeKey = "statushub:ready-probe"

    /// Replicas acknowledge once a second unasked (`REPLCONF ACK`), so `lag` is 0 or 1 while one is there; past 2 s
    /// it has stopped (stalled, or cut off without the master knowing yet).
    static let replicaMaxLagSeconds = 2
}
