/// One reason an input was refused: the field it concerns (dotted path, `data.current_status`) and why.
public struct FieldError: Error, Sendable, Equatable, Codable {
    public var field: String
    public var reason: String

    public init(field: String, reason: String) {
        self.field = field
        self.reason = reason
    }
}
