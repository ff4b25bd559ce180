import StatusHubCore

extension RedisEngine: WriteProbe {
    /// Writes a small key that expires at once, the same way an append would be refused: Redis checks `maxmemory`
    /// (`-OOM`) and read-only replicas (`-READONLY`) for any write, before running it. `INFO memory` would only
    /// approximate the check Redis makes.
    public func writeRefusal() async -> String? {
        do {
            let reply = try await commands.connection().send(["SET", keys.entityTag + Self.writeProbeKey, "1", "PX", "1000"])
            return reply.errorMessage.map { "Redis refuses writes: \($0)" }
        } catch {
            return "Redis did not answer a write: \(error)"
        }
    }

    /// Outside the keys `RedisKeys` names, and gone a second after each probe. On a Redis Cluster it carries the
    /// partition's tag, so each partition probes the master that holds its slot (untagged, every partition probed
    /// whichever master served the key's slot, and one lost master made them all unready).
    static let writeProbeKey = "statushub:ready-probe"
}
