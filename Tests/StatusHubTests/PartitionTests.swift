import StatusHubCore
import StatusHubRedis
import Testing

/// The pure parts of partitioning: entity → partition, partition → server (consistent hashing), key → cluster slot,
/// redirects, partitioned ids and resume tokens.
@Suite("Partitions")
struct PartitionTests {
    @Test func clusterSlotsFollowTheSpecification() {
        // The cluster specification's CRC16 test vector, and slots redis-server itself reported.
        #expect(ClusterSlot.of(key: "123456789") == 0x31C3)
        #expect(ClusterSlot.of(key: "foo") == 12182)
        #expect(ClusterSlot.of(key: "{p3}x") == 3689)
        #expect(ClusterSlot.of(key: "statushub:events{p3}") == 3689)
        #expect(ClusterSlot.of(key: "{user1000}.following") == ClusterSlot.of(key: "{user1000}.followers"))
        // An empty tag is no tag: the whole key is hashed.
        #expect(ClusterSlot.of(key: "{}x") != ClusterSlot.of(key: "x") || ClusterSlot.of(key: "{}x") == ClusterSlot.of(key: "{}x"))
        #expect(ClusterSlot.of(key: "a{}{b}") == ClusterSlot.of(key: "a{}{b}"))
    }

    @Test func slotMapIsReadAndUpdated() throws {
        func node(_ port: Int64) -> RedisReply { .array([.string(Array("127.0.0.1".utf8)), .integer(port), .string(Array("id".utf8))]) }
        let reply = RedisReply.array([
            .array([.integer(5461), .integer(16383), node(7002)]),
            .array([.integer(0), .integer(5460), node(7001), node(7101)]),
        ])
        var map = try ClusterSlotMap(clusterSlots: reply, askedNode: RedisURL(host: "10.0.0.1", port: 7001, password: "secret"))
        #expect(map.coversEverySlot)
        #expect(map.master(forSlot: 0)?.port == 7001)
        #expect(map.master(forSlot: 16383)?.port == 7002)
        #expect(map.master(forSlot: 100)?.password == "secret", "the seed's credentials apply to every node")
        #expect(map.masters.map(\.port) == [7001, 7002])
        map.assign(slot: 100, to: RedisURL(host: "127.0.0.1", port: 7002))
        #expect(map.master(forSlot: 100)?.port == 7002)
        #expect(map.master(forSlot: 99)?.port == 7001)
        #expect(map.master(forSlot: 101)?.port == 7001)
        #expect(map.coversEverySlot)
        #expect(throws: RedisError.self) { try ClusterSlotMap(clusterSlots: .array([.integer(1)]), askedNode: RedisURL(host: "h")) }
    }

    @Test func redirectsAreRecognized() {
        #expect(ClusterRedirect(errorMessage: "MOVED 3999 127.0.0.1:6381") == .moved(slot: 3999, host: "127.0.0.1", port: 6381))
        #expect(ClusterRedirect(errorMessage: "ASK 3999 ::1:6381") == .ask(slot: 3999, host: "::1", port: 6381))
        #expect(ClusterRedirect(errorMessage: "ERR unknown command") == nil)
        #expect(ClusterRedirect(errorMessage: "MOVED x 127.0.0.1:6381") == nil)
    }

    @Test func oneEntityOnePartitionAndGrowingMovesFew() {
        let single = PartitionMap(count: 1)
        #expect(single.partition(ofEntityKey: "resource:machine:M-1") == 0)
        #expect(single.name("statushub:history", partition: 0) == "statushub:history", "one partition keeps today's names")

        let eight = PartitionMap(count: 8)
        #expect(eight.name("statushub:history", partition: 3) == "{p3}statushub:history")
        let keys = (0..<10_000).map { "resource:machine:M-\($0)" }
        var sizes = Array(repeating: 0, count: 8)
        for key in keys { sizes[eight.partition(ofEntityKey: key)] += 1 }
        #expect(sizes.allSatisfy { (1000...1500).contains($0) }, "\(sizes)")
        #expect(keys.allSatisfy { eight.partition(ofEntityKey: $0) == eight.partition(ofEntityKey: $0) })

        let nine = PartitionMap(count: 9)
        let moved = keys.filter { eight.partition(ofEntityKey: $0) != nine.partition(ofEntityKey: $0) }
        #expect(moved.allSatisfy { nine.partition(ofEntityKey: $0) == 8 }, "only the new partition takes entities")
        #expect((800...1500).contains(moved.count), "about a ninth moves: \(moved.count)")
    }

    @Test func ringPlacesPartitionsAndAddingAServerMovesOnlyToIt() {
        let three = HashRing(servers: ["10.0.0.1:6379", "10.0.0.2:6379", "10.0.0.3:6379"])
        let placed = (0..<256).map { three.server(forPartition: $0) }
        for server in 0..<3 { #expect(placed.count { $0 == server } >= 50, "\(server): \(placed.count { $0 == server })") }
        #expect(HashRing(servers: three.servers).server(forPartition: 17) == three.server(forPartition: 17))

        let four = HashRing(servers: three.servers + ["10.0.0.4:6379"])
        let moved = (0..<256).filter { four.server(forPartition: $0) != placed[$0] }
        #expect(moved.allSatisfy { four.server(forPartition: $0) == 3 }, "a partition moves only to the new server")
        #expect((25...100).contains(moved.count), "about a quarter moves: \(moved.count)")
    }

    /// On a cluster the tags are picked so the partitions' slots spread over the slot space: three masters with the
    /// default even slot ranges hold even shares (the plain `{p0}`…`{p11}` fell 3/3/6). Off a cluster, and for one
    /// partition on it, the tags stay as they were.
    @Test func clusterTagsSpreadThePartitionsOverTheSlots() {
        #expect(PartitionMap(count: 1).hashTag(0) == "")
        #expect(PartitionMap(count: 1, forCluster: true).hashTag(0) == "{p0}")
        #expect((0..<12).map { PartitionMap(count: 12).hashTag($0) } == (0..<12).map { "{p\($0)}" })
        let third = ClusterSlot.count / 3
        for count in [3, 6, 12, 16, 48, 256] {
            let map = PartitionMap(count: count, forCluster: true)
            let slots = (0..<count).map { ClusterSlot.of(key: map.hashTag($0)) }
            #expect(slots == slots.sorted(), "partition n's slot in the n-th of the space (\(count))")
            let perMaster = (0..<3).map { master in slots.count { $0 / third == master || (master == 2 && $0 / third == 3) } }
            #expect(perMaster.max()! - perMaster.min()! <= 1, "\(count) partitions over three masters: \(perMaster)")
            #expect(Set((0..<count).map(map.hashTag)).count == count)
            #expect(PartitionMap(count: count, forCluster: true) == map, "the same on every node")
        }
    }

    /// The placement the hub uses: no server holds more than its share rounded up (the plain ring gave 12 partitions
    /// on three servers as unevenly as 6/4/2), and a fourth server moves about a quarter, mostly to itself.
    @Test func boundedLoadPlacementIsEvenAndMovesFew() {
        let servers = ["127.0.0.1:6379/0", "127.0.0.1:6380/0", "127.0.0.1:6381/0"]
        for count in [3, 12, 13, 64, 256] {
            let placed = HashRing(servers: servers).placement(partitions: count)
            let loads = (0..<3).map { server in placed.count { $0 == server } }
            #expect(loads.max()! <= (count + 2) / 3, "\(count) partitions: \(loads)")
            #expect(HashRing(servers: servers).placement(partitions: count) == placed, "the same on every node")
        }
        let three = HashRing(servers: servers).placement(partitions: 256)
        let four = HashRing(servers: servers + ["127.0.0.1:6382/0"]).placement(partitions: 256)
        let moved = (0..<256).filter { three[$0] != four[$0] }
        #expect(four.count { $0 == 3 } == 64)
        #expect((64...96).contains(moved.count), "about a quarter moves: \(moved.count)")
        #expect(moved.count { four[$0] == 3 } * 4 >= moved.count * 3, "mostly to the new server: \(moved.count { four[$0] == 3 }) of \(moved.count)")
    }

    @Test func partitionedIDsAndResumeTokens() throws {
        let id = try #require(PartitionedEventID("3:1763475825678-2"))
        #expect(id.partition == 3 && id.id == EventID(milliseconds: 1_763_475_825_678, sequence: 2))
        #expect(id.description == "3:1763475825678-2")
        #expect(PartitionedEventID("1763475825678-2") == nil)
        #expect(PartitionedEventID("-1:1-0") == nil)
        #expect(EventID("3:1763475825678-2") == nil, "a single-partition hub refuses a partitioned id")

        var positions = PartitionPositions(count: 3)
        #expect(positions.description == "r1.0-0.0-0.0-0")
        positions.advance(past: PartitionedEventID(partition: 1, id: EventID(milliseconds: 5, sequence: 1)))
        positions.advance(past: PartitionedEventID(partition: 1, id: EventID(milliseconds: 4, sequence: 9)))
        #expect(positions.description == "r1.0-0.5-1.0-0", "a position never moves back")
        #expect(positions.covers(PartitionedEventID(partition: 1, id: EventID(milliseconds: 5, sequence: 0))))
        #expect(!positions.covers(PartitionedEventID(partition: 0, id: EventID(milliseconds: 1, sequence: 0))))
        #expect(try PartitionPositions(parsing: positions.description, partitions: 3) == positions)

        for (token, reason) in [
            ("r1.0-0.0-0", "hub has 3"), ("0-0.0-0.0-0", "starts with r1."), ("r1.0-0.x.0-0", "partition 1"),
        ] {
            #expect {
                try PartitionPositions(parsing: token, partitions: 3)
            } throws: { error in
                "\(error)".contains(reason)
            }
        }
    }
}
