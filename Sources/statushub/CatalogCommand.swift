import ArgumentParser
import Foundation
import StatusHubCore

/// `statushub catalog`: prints the catalog a config loads, as the protocol reference's tables in docs/protocol.md (`--markdown`) or as
/// `GET /v1/catalog` answers it.
struct CatalogCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "catalog", abstract: "Print the event catalog the config loads (JSON, or the tables of docs/protocol.md with --markdown).")

    @Option(name: .long, help: "YAML config file, as for serve; default: the built-in defaults (catalog from config/catalog).")
    var config: String?

    @Flag(help: "Print the entity-type and event-type tables of docs/protocol.md instead of JSON.")
    var markdown = false

    func run() throws {
        let loaded = try HubConfig.load(path: config, environment: ProcessInfo.processInfo.environment)
        if markdown {
            print(loaded.catalog.markdown, terminator: "")
        } else {
            var bytes: [UInt8] = []
            loaded.catalog.json(ttlSeconds: loaded.cacheTTL.seconds(for:)).write(into: &bytes)
            print(String(decoding: bytes, as: UTF8.self))
        }
    }
}
