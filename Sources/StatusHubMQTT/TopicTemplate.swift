/// `{name}` placeholders in mapping templates (`entity_id: "{machine}"`, `line: "{line}"`).
enum TopicTemplate {
    /// The template with each `{name}` replaced by its value; an unknown name stays as written (the config check
    /// refuses those before the bridge starts).
    static func fill(_ template: String, with names: [String: String]) -> String {
        var result = ""
        var rest = Substring(template)
        while let open = rest.firstIndex(of: "{"), let close = rest[open...].firstIndex(of: "}") {
            result += rest[..<open]
            let name = String(rest[rest.index(after: open)..<close])
            result += names[name] ?? "{\(name)}"
            rest = rest[rest.index(after: close)...]
        }
        return result + rest
    }

    /// The `{name}`s a template uses.
    static func names(in template: String) -> [String] {
        var names: [String] = []
        var rest = Substring(template)
        while let open = rest.firstIndex(of: "{"), let close = rest[open...].firstIndex(of: "}") {
            names.append(String(rest[rest.index(after: open)..<close]))
            rest = rest[rest.index(after: close)...]
        }
        return names
    }
}
