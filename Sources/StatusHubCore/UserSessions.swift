/// Seed 003 §4.2: "Key: session:{user_id}  TTL: 28800 seconds (8 hours)  Value: User session, preferences, active
/// filters". What a user's screens keep between loads and devices (the line watched, the filters set): a JSON
/// object the hub stores whole for the user its token names (`sub`), and never reads.
public enum UserSessions {
    /// What a user id (a token's `sub`) may be: it becomes part of a Redis key.
    public static let userRule = "1-256 bytes, no control characters"

    public static func isValidUser(_ user: String) -> Bool {
        !user.isEmpty && user.utf8.count <= 256 && !user.unicodeScalars.contains { $0.properties.generalCategory == .control }
    }

    /// The session's key: `session:<user>` in the default tenant, `@acme:session:<user>` in another (see `Tenant`).
    public static func key(user: String, tenant: String) -> String {
        Tenant.prefix(tenant) + "session:" + user
    }
}
