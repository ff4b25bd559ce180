/// A lookup by name for the catalog's few dozen type names, on every event: by length and first and last byte
/// into small buckets, then one string comparison. A `Dictionary<String, _>` hashes the whole name with SipHash
/// first, which made the catalog's validation slower than the compiled enums it replaced (`statushub-bench
/// validate`, loadtest/RESULTS.md).
struct NameTable<Value: Sendable>: Sendable {
    private var buckets: [[(name: String, value: Value)]]
    private let mask: Int

    init(_ entries: [(name: String, value: Value)]) {
        var size = 16
        while size < entries.count * 2 { size *= 2 }
        mask = size - 1
        buckets = Array(repeating: [], count: size)
        for entry in entries { buckets[Self.slot(entry.name, mask: size - 1)].append(entry) }
    }

    subscript(name: String) -> Value? {
        for entry in buckets[Self.slot(name, mask: mask)] where entry.name == name { return entry.value }
        return nil
    }

    private static func slot(_ name: String, mask: Int) -> Int {
        let utf8 = name.utf8
        guard let first = utf8.first, let last = utf8.last else { return 0 }
        return (utf8.count &* 31 &+ Int(first) &* 7 &+ Int(last) &* 131) & mask
    }
}
