import NIOCore
import StatusHubCore

/// The frames of one event for fan-out, one per variant its restrictions make (`Redaction`): built the first time a
/// receiver needs it and shared by every receiver with the same view, so a thousand subscribers in two roles cost
/// two encodings, not a thousand. An event nothing restricts is one frame, and costs no look at its JSON.
struct RedactionVariants {
    private let whole: Connection.Held
    private let applicable: Redaction.Applicable?
    private let decoded: JSONValue?
    /// Hidden field names → the frame without them.
    private var frames: [[String]: Connection.Held] = [:]

    init(_ whole: Connection.Held, catalog: Catalog) {
        self.whole = whole
        var decoded: JSONValue?? = nil
        applicable = Redaction.restriction(of: whole.event, decoded: &decoded, catalog: catalog)
        self.decoded = decoded ?? nil
    }

    /// Whether readers may get different frames (so each needs its claims looked at).
    var varies: Bool { applicable != nil }

    /// The frame for a reader with `claims` and the fields it leaves out (none: the event whole), or nil when it may
    /// not see the event.
    mutating func view(for claims: Set<String>?) -> (held: Connection.Held, hidden: [String])? {
        guard let applicable else { return (whole, []) }
        guard let hidden = applicable.hidden(from: claims) else { return nil }
        guard !hidden.isEmpty, let decoded else { return (whole, []) }
        if let known = frames[hidden] { return (known, hidden) }
        let event = Redaction.removing(hidden, from: whole.event, decoded: decoded)
        let held = Connection.Held(event: event, frame: WireFrame.text(ServerMessage.event(event)), conflationKey: whole.conflationKey, stamp: whole.stamp)
        frames[hidden] = held
        return (held, hidden)
    }
}
