/// Tenants keep plants apart on one hub: every event belongs to its publisher's tenant, and a subscriber only
/// ever receives events of its own tenant.
///
/// Routing carries the tenant, so isolation holds in the subscription index, the cache and the history alike,
/// on every engine. The default tenant is unprefixed (so a hub without auth stores and sends exactly what it
/// always did); any other tenant `acme` is routed under a first segment `@acme`: channel
/// `@acme:line:Line-2:alerts:machine:M-203`, cache key `@acme:resource:machine:M-203`, idempotency key
/// `@acme:<key>`. `@` is not a segment character, so no client pattern can name a tenant segment, and
/// wildcards never match one (`ChannelPattern.matches`, `SubscriptionIndex`): `*` of the default tenant stays
/// in the default tenant. Clients never see the prefix: the patterns they send and get echoed are unscoped;
/// events of a non-default tenant carry a `"tenant"` field.
public enum Tenant {
    public static let defaultName = "default"
    public static let marker = UInt8(ascii: "@")
    public static let rule = "1-64 characters of A-Z a-z 0-9 . _ -"

    public static func isValid(_ name: String) -> Bool {
        ChannelName.isValidSegment(name) && name.utf8.count <= 64
    }

    /// `""` for the default tenant, else `@<tenant>:`.
    public static func prefix(_ tenant: String) -> String {
        tenant == defaultName ? "" : "@\(tenant):"
    }

    /// Whether a channel or key segment is a tenant segment (`@acme`), which no wildcard may match.
    @inlinable
    public static func isTenantSegment(_ segment: Substring) -> Bool { segment.utf8.first == marker }

    /// The tenant a channel or key belongs to, and the rest of it.
    public static func split(_ scoped: String) -> (tenant: String, rest: Substring) {
        guard scoped.utf8.first == marker, let colon = scoped.firstIndex(of: ChannelName.separator) else {
            return (defaultName, scoped[...])
        }
        return (String(scoped[scoped.index(after: scoped.startIndex)..<colon]), scoped[scoped.index(after: colon)...])
    }
}

extension ChannelPattern {
    /// The pattern as the index and engines see it for `tenant`: itself for the default tenant, else with the
    /// tenant segment in front (`@acme:line:Line-2:*`).
    public func scoped(to tenant: String) -> ChannelPattern {
        tenant == Tenant.defaultName
            ? self : ChannelPattern(text: Tenant.prefix(tenant) + text, segments: [.literal("@\(tenant)")] + segments)
    }

    /// The tenant a scoped pattern belongs to, and the pattern as its client wrote it.
    public var unscoped: (tenant: String, pattern: ChannelPattern) {
        guard case .literal(let first)? = segments.first, first.utf8.first == Tenant.marker else { return (Tenant.defaultName, self) }
        return (String(first.dropFirst()), ChannelPattern(text: String(Tenant.split(text).rest), segments: Array(segments.dropFirst())))
    }
}
