import Foundation

/// What the YAML tree may hold, checked before it is decoded, so a mistake is named by its key as the file writes
/// it: unknown keys at any depth, and numbers JSON (the way to the structs) cannot carry.
extension HubConfig {
    /// Section → keys it accepts. A misspelt key is an error, never silently a default.
    static let knownKeys: [String: Set<String>] = [
        "server": ["host", "port", "max_body_bytes", "max_batch_events", "shutdown_grace_seconds", "idempotency_window_seconds",
            "max_clock_ahead_seconds", "sequence_reset_seconds", "stale_kept_seconds", "session_expiry_seconds", "max_session_bytes",
            "max_event_bytes", "max_connections", "max_connections_per_address", "trusted_proxies", "idle_timeout_seconds", "listen_backlog",
            "tls_certificate_file", "tls_private_key_file",
        ],
        "websocket": [
            "max_frame_bytes", "max_subscriptions", "outbox_capacity", "conflate_above", "ping_interval_seconds", "compression",
            "max_messages_per_second", "write_delay_ms", "recent_feed_kept",
        ],
        "redis": [
            "url", "history_max_length", "history_max_age_seconds", "stream_key", "pubsub_channel", "reconnect_initial_seconds",
            "reconnect_max_seconds", "command_timeout_seconds", "sentinels", "master_name", "min_replicas_acked", "shards",
            "partitions", "cluster",
        ],
        "memory": ["history_max_length", "history_max_age_seconds", "history_max_bytes"],
        "auth": [
            "required", "api_keys", "jwt_hs256_secret", "jwt_es256_public_key_file", "ingest_events_per_second", "ingest_burst",
            "metrics_key_hash",
        ],
        // Any entity type of the catalog; checked against it once it is loaded.
        "cache_ttl": [],
        "catalog": ["directory", "files"],
        "shifts": ["schedule", "utc_offset"],
        "mqtt": [
            "url", "client_id", "username", "password", "tls_ca_file", "tls_certificate_file", "tls_private_key_file",
            "keepalive_seconds", "reconnect_initial_seconds", "reconnect_max_seconds", "share_group", "max_pending_messages",
            "tenant", "topics", "sparkplug",
        ],
        "log_level": [],
    ]

    static func checkKnownKeys(_ tree: [String: Any]) throws {
        for (section, value) in tree {
            guard let keys = knownKeys[section] else {
                throw ConfigError(description: "config: unknown section '\(section)'; known: \(knownKeys.keys.sorted().joined(separator: ", "))")
            }
            guard let mapping = value as? [String: Any] else {
                if keys.isEmpty && section != "cache_ttl" { continue }
                if value is NSNull { continue }
                throw ConfigError(description: "config: '\(section)' must be a mapping")
            }
            for key in mapping.keys where !keys.contains(key) && section != "cache_ttl" {
                throw ConfigError(description: "config: unknown key '\(section).\(key)'; known: \(keys.sorted().joined(separator: ", "))")
            }
        }
    }

    /// Keys of the mappings inside sections, by path (`[]`: every entry of a list). A misspelt key there is as much
    /// an error as at the top: `entity_type:` for `entity_types:` would drop an API key's restriction. The names
    /// are the types' own coding keys, so a key added to a type is known here too.
    static let knownNestedKeys: [String: Set<String>] = [
        "auth.api_keys[]": Set(Auth.APIKey.CodingKeys.allCases.map(\.rawValue)),
        "mqtt.topics[]": Set(TopicMapping.CodingKeys.allCases.map(\.rawValue)),
        "mqtt.sparkplug": Set(Sparkplug.CodingKeys.allCases.map(\.rawValue)),
    ]

    /// Walks a section and refuses, naming its whole path, a key `knownNestedKeys` does not list for its mapping
    /// (`auth.api_keys[0].line`) and a number that is not finite: YAML reads `.nan` and `.inf` as numbers, no setting
    /// takes one, and JSON, the way to the structs, cannot carry them.
    static func checkNested(_ value: Any, path: String, pattern: String) throws {
        switch value {
        case let number as Double where !number.isFinite:
            throw ConfigError(description: "config: \(path) must be a finite number; it is \(number)")
        case let mapping as [String: Any]:
            if let keys = knownNestedKeys[pattern] {
                for key in mapping.keys.sorted() where !keys.contains(key) {
                    throw ConfigError(description: "config: unknown key '\(path).\(key)'; known: \(keys.sorted().joined(separator: ", "))")
                }
            }
            for (key, inner) in mapping { try checkNested(inner, path: "\(path).\(key)", pattern: "\(pattern).\(key)") }
        case let list as [Any]:
            for (index, inner) in list.enumerated() { try checkNested(inner, path: "\(path)[\(index)]", pattern: "\(pattern)[]") }
        default:
            break
        }
    }

    /// `server.port`, `auth.api_keys[0].entity_types`: a decoding error's path in the YAML's words.
    static func keyPath(_ codingPath: [any CodingKey]) -> String {
        codingPath.reduce(into: "") { path, key in
            if let index = key.intValue, key.stringValue.hasPrefix("Index") {
                path += "[\(index)]"
            } else {
                path += (path.isEmpty ? "" : ".") + snakeCased(key.stringValue)
            }
        }
    }

    /// A fraction (or a number past `Int`'s range) where a whole number goes; the decoder would say only "not valid
    /// JSON", without the key. The whole-number settings are the ranges' whole ones, and `cache_ttl`'s.
    static func checkWholeNumbers(_ tree: [String: Any]) throws {
        var found: [(key: String, value: Any?)] = ranges.filter(\.whole).map { range in
            (range.key, range.key.split(separator: ".").reduce(tree as Any?) { node, part in (node as? [String: Any])?[String(part)] })
        }
        found += (tree["cache_ttl"] as? [String: Any] ?? [:]).map { ("cache_ttl.\($0.key)", $0.value) }
        for (key, value) in found.sorted(by: { $0.key < $1.key }) {
            guard let number = value as? Double, !(value is Int) else { continue }
            throw ConfigError(description: "config: \(key) must be a whole number; it is \(number)")
        }
    }
}
