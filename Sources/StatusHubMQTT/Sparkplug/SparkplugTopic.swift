/// A Sparkplug B topic (specification 3.0, 4.1): `spBv1.0/<group_id>/<message_type>/<edge_node_id>[/<device_id>]`,
/// or a host's `spBv1.0/STATE/<host_id>`.
public struct SparkplugTopic: Sendable, Equatable, Hashable {
    public enum Kind: String, Sendable {
        case nodeBirth = "NBIRTH", nodeDeath = "NDEATH", deviceBirth = "DBIRTH", deviceDeath = "DDEATH"
        case nodeData = "NDATA", deviceData = "DDATA", nodeCommand = "NCMD", deviceCommand = "DCMD"
    }

    public static let namespace = "spBv1.0"

    public var group: String
    public var kind: Kind
    public var node: String
    public var device: String?

    public init(group: String, kind: Kind, node: String, device: String? = nil) {
        self.group = group
        self.kind = kind
        self.node = node
        self.device = device
    }

    /// nil for anything that is not a node's or device's message (STATE, a foreign topic, a malformed one).
    public init?(_ topic: String) {
        let levels = topic.split(separator: "/", omittingEmptySubsequences: false)
        guard levels.count == 4 || levels.count == 5, levels[0] == Self.namespace,
            let kind = Kind(rawValue: String(levels[2])), levels.allSatisfy({ !$0.isEmpty })
        else { return nil }
        let isDevice = [.deviceBirth, .deviceDeath, .deviceData, .deviceCommand].contains(kind)
        guard isDevice == (levels.count == 5) else { return nil }
        self.init(group: String(levels[1]), kind: kind, node: String(levels[3]), device: isDevice ? String(levels[4]) : nil)
    }

    public var description: String {
        [Self.namespace, group, kind.rawValue, node].joined(separator: "/") + (device.map { "/" + $0 } ?? "")
    }

    /// The node this message belongs to.
    public var nodeKey: NodeKey { NodeKey(group: group, node: node) }

    public struct NodeKey: Sendable, Hashable, CustomStringConvertible {
        public var group: String
        public var node: String
        public var description: String { "\(group)/\(node)" }
    }

    /// `spBv1.0/STATE/<host_id>`: where a host application says it is online (retained).
    public static func state(hostID: String) -> String { "\(namespace)/STATE/\(hostID)" }

    /// Whether `topic` is a host application's STATE topic.
    public static func isHostState(_ topic: String) -> Bool {
        let levels = topic.split(separator: "/", omittingEmptySubsequences: false)
        return levels.count == 3 && levels[0] == namespace && levels[1] == "STATE" && !levels[2].isEmpty
    }
}
