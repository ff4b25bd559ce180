import StatusHubCore

/// Machine status events numbered per publisher (`"publisher":p,"sequence":n` in `data`), so a test can check that
/// every node delivers each publisher's events once and in its order.
enum NumberedEvents {
    /// Four publishers on two nodes (two on each) post `perPublisher` events each, one at a time: publishers 0 and 1
    /// to a machine of their own, 2 and 3 (one on each node) to a third machine they share.
    static func publishFromFour(to nodes: (any Engine, any Engine), machines: [String], perPublisher: Int) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for publisher in 0..<4 {
                let node = publisher.isMultiple(of: 2) ? nodes.0 : nodes.1
                let machine = machines[min(publisher, 2)]
                group.addTask {
                    for sequence in 0..<perPublisher {
                        let json = SampleEvents.machineStatus(machine, extra: #","publisher":\#(publisher),"sequence":\#(sequence)"#)
                        _ = try await node.append([SampleEvents.validated(json)])
                    }
                }
            }
            try await group.waitForAll()
        }
    }

    /// The `sequence` numbers of `events` (of one publisher, or all) in delivery order. Stale notices are left out:
    /// one carries the machine's last state, publisher and sequence included.
    static func sequences(_ events: [StoredEvent], publisher: Int?) -> [Int] {
        events.filter { event in !event.isStale && (publisher.map { event.jsonString.contains(#""publisher":\#($0),"#) } ?? true) }
            .compactMap { event -> Int? in
                let parts = event.jsonString.components(separatedBy: #""sequence":"#)
                return parts.count == 2 ? Int(parts[1].prefix { $0.isNumber }) : nil
            }
    }
}
