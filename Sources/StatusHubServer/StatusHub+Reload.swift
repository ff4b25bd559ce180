import Foundation
import StatusHubCore

/// What a running node takes from its configuration read again (SIGHUP, `HangupReload`): the credentials, so a key
/// or secret is rotated without the restart that would close every dashboard — as Mosquitto reloads its password
/// file. Everything else is read at start only, and said so.
extension StatusHub {
    public struct Credentials: Sendable, Equatable {
        /// API keys configured.
        public var publisherKeys: Int
        /// The algorithms subscriber tokens may be signed with (`HS256`, `ES256`).
        public var tokenAlgorithms: [String]
    }

    /// The API keys, the token secret and key and the scraper's key of `reread` from now on, for requests and
    /// connections that authenticate from now on (a session keeps its token until it expires or is renewed). Throws
    /// `ConfigError`, and changes nothing, when the token key file cannot be used.
    public func replaceCredentials(from reread: HubConfig) throws -> Credentials {
        try access.replaceCredentials(reread.auth)
        return Credentials(publisherKeys: access.publisherKeys.count, tokenAlgorithms: access.subscriberTokens.algorithms)
    }

    /// The settings (`section.key`) in which `reread` differs from the configuration the node started with, other
    /// than the credentials: they take effect at its next start.
    public func settingsNeedingRestart(_ reread: HubConfig) -> [String] {
        Self.settingsNeedingRestart(running: config, reread: reread)
    }

    static let reloadedSettings: Set<String> = ["auth.api_keys", "auth.jwt_hs256_secret", "auth.jwt_es256_public_key_file", "auth.metrics_key_hash"]

    static func settingsNeedingRestart(running: HubConfig, reread: HubConfig) -> [String] {
        func sections(_ config: HubConfig) -> [String: Any] {
            (try? JSONSerialization.jsonObject(with: JSONEncoder().encode(config))) as? [String: Any] ?? [:]
        }
        let before = sections(running), after = sections(reread)
        var changed: [String] = []
        for section in Set(before.keys).union(after.keys).sorted() {
            let old = before[section] as? [String: Any], new = after[section] as? [String: Any]
            guard old != nil || new != nil else {
                if !same(before[section], after[section]) { changed.append(section) }
                continue
            }
            for key in Set((old ?? [:]).keys).union((new ?? [:]).keys).sorted() {
                let name = "\(section).\(HubConfig.snakeCased(key))"
                if !reloadedSettings.contains(name), !same(old?[key], new?[key]) { changed.append(name) }
            }
        }
        if running.catalog != reread.catalog, !changed.contains(where: { $0.hasPrefix("catalog.") }) {
            changed.append("catalog (its files)")
        }
        return changed
    }

    private static func same(_ lhs: Any?, _ rhs: Any?) -> Bool {
        switch (lhs, rhs) {
        case (nil, nil): return true
        case (let lhs?, let rhs?): return (lhs as? NSObject)?.isEqual(rhs) ?? false
        default: return false
        }
    }
}
