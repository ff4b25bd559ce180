import Foundation
import Synchronization
import Yams

/// Reads catalog files (`config/catalog/*.yaml`) into a `Catalog`, refusing anything it cannot use with a
/// `CatalogError` that names the file, the key path and the reason. The format is in the README ("Event
/// catalog"); in short, each file may declare:
///
/// ```yaml
/// entity_types:
///   machine: {cache_key: "resource:machine:{id}", ttl_seconds: 300, status: [running, idle, …]}
/// categories:
///   resource-status: {description: …}
/// event_types:
///   resource_status_changed:
///     category: resource-status
///     carries_state: true
///     entity_types: [operator, machine]
///     data: {current_status: {type: status, required: true}}
///     for_entity: {machine: {oee_percentage: {type: number, min: 0, max: 100}}}
///     rules: [{less_or_equal: [quantity_produced, quantity_ordered]}]
/// ```
///
/// Files are read in the order given (a directory's in name order); names are unique across all of them, and an
/// event type may name entity types and categories of any file.
public enum CatalogLoader {
    /// Every `*.yaml` / `*.yml` file of `directory`, in name order, then `files`.
    public static func load(directory: String?, files: [String] = []) throws -> Catalog {
        var paths: [String] = []
        if let directory, !directory.isEmpty {
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else {
                throw CatalogError(file: directory, path: "", reason: "cannot read the catalog directory")
            }
            paths += names.filter { $0.hasSuffix(".yaml") || $0.hasSuffix(".yml") }.sorted()
                .map { (directory as NSString).appendingPathComponent($0) }
        }
        paths += files
        var sources: [(path: String, text: String)] = []
        for path in paths {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw CatalogError(file: path, path: "", reason: "cannot read the catalog file")
            }
            sources.append((path, text))
        }
        return try load(sources: sources)
    }

    public static func load(directory: String) throws -> Catalog { try load(directory: directory, files: []) }

    /// Builds a catalog from file texts (`path` only names the file in errors). The shipped catalog is reused
    /// when the texts are its own, so every config that loads the default shares one set of definitions.
    public static func load(sources: [(path: String, text: String)]) throws -> Catalog {
        guard !sources.isEmpty else {
            throw CatalogError(file: "catalog", path: "", reason: "no catalog files: set catalog.directory or catalog.files")
        }
        if let standard = standardIfLoaded.withLock({ $0 }), standard.sources.map(\.text) == sources.map(\.text) {
            return standard
        }
        var builder = CatalogBuilder()
        for source in sources { try builder.read(source) }
        return try builder.build(sources: sources)
    }

    /// `Catalog.standard` once something has loaded it; never forces the load itself.
    static let standardIfLoaded = Mutex<Catalog?>(nil)
}
