import CJemalloc

/// The allocator the hub runs on: jemalloc, linked into the binary, so every `malloc` of the process — Swift's
/// runtime, NIO, hiredis — is jemalloc's. glibc's malloc kept the holes a restart storm's short-lived allocations
/// left between connections' long-lived ones (a node holding 19,000 resumed dashboards at 239 MiB against jemalloc's
/// 186), and batched ingest, mostly allocation, runs 25–30 % faster on jemalloc (loadtest/RESULTS.md, *what a resumed
/// connection keeps, and the allocator*).
enum Allocator {
    /// "jemalloc 5.3.0-0-g…", or nil if jemalloc's `mallctl` does not answer.
    static var version: String? {
        var version: UnsafePointer<CChar>?
        var size = MemoryLayout<UnsafePointer<CChar>?>.size
        guard mallctl("version", &version, &size, nil, 0) == 0, let version else { return nil }
        return "jemalloc " + String(cString: version)
    }
}
