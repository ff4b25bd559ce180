/// A catalog that cannot be used: the file, the key path inside it (`event_types.alert_raised.data.severity`),
/// the line when known, and what is wrong. `serve` stops with it.
public struct CatalogError: Error, CustomStringConvertible, Sendable, Equatable {
    public var file: String
    public var path: String
    public var line: Int?
    public var reason: String

    public init(file: String, path: String, line: Int? = nil, reason: String) {
        self.file = file
        self.path = path
        self.line = line
        self.reason = reason
    }

    public var description: String {
        let place = line.map { "\(file):\($0)" } ?? file
        return path.isEmpty ? "catalog \(place): \(reason)" : "catalog \(place): \(path): \(reason)"
    }
}
