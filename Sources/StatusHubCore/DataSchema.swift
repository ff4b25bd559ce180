/// The rules a catalog places on an event's `data` for one entity type, compiled from the catalog's
/// declaration (`CatalogLoader`): every field's kind and bounds, then the cross-field rules. Checking reports
/// every problem, each naming its field (`data.current_status`, `data.lots_consumed[2].lot_id`).
///
/// The reasons are the ones the compiled seed 003 rules gave (`is required; allowed: …`, `unknown value …`,
/// `must be between 0 and 100 (got 120)`), so publishers see the same answers.
///
/// Classes, not structs: the validator walks them for every event, and a reference is one retain where a struct
/// of strings and arrays is one per member (`statushub-bench validate`).
final class DataSchema: Sendable {
    let fields: [FieldRule]
    let rules: [CrossFieldRule]
    /// The entity type's name, for the wording of cross-field rules (`an allocation names …`).
    let entityName: String

    /// The top-level rules by name, and how many of them are required: for `passes`.
    private let fieldsByName: NameTable<FieldRule>
    private let requiredCount: Int

    init(fields: [FieldRule], rules: [CrossFieldRule], entityName: String) {
        self.fields = fields
        self.rules = rules
        self.entityName = entityName
        fieldsByName = NameTable(fields.map { ($0.name, $0) })
        requiredCount = fields.count(where: \.required)
    }

    func check(_ data: [String: JSONValue]) -> [FieldError] {
        var errors: [FieldError] = []
        if !passes(data) { check(data, fields: fields, parent: nil, &errors) }
        if !rules.isEmpty {
            for rule in rules { rule.check(data, entityName: entityName, &errors) }
        }
        return errors
    }

    /// What is wrong with `value` as the top-level field `name` (nil when it would pass); `.undeclared` when the
    /// schema has no such field. For settings that produce data (an MQTT mapping's renamed values), checked once at
    /// start rather than found on every message.
    func problem(withField name: String, value: JSONValue) -> FieldProblem? {
        guard let field = fieldsByName[name] else { return .undeclared(fields.map(\.name)) }
        var errors: [FieldError] = []
        check(value, kind: field.kind, path: field.path, &errors)
        return errors.first.map { .invalid($0) }
    }

    /// Whether every field `data` carries is valid and every required one is there, looking up only the members it
    /// has. A type declares many optional fields that an event rarely carries, and walking the declarations cost a
    /// `Dictionary` lookup for each (the catalog's 5 % over the compiled rules, loadtest/RESULTS.md). A false answer
    /// is worked out again in declared order (`check(_:fields:parent:_:)`), so the errors and their order are the
    /// same whichever way an event goes.
    private func passes(_ data: [String: JSONValue]) -> Bool {
        var required = 0
        var problems: [FieldError] = []
        for (name, value) in data {
            guard let field = fieldsByName[name] else { continue }
            if value == .null {
                guard !field.required else { return false }
                continue
            }
            check(value, kind: field.kind, path: field.path, &problems)
            guard problems.isEmpty else { return false }
            if field.required { required += 1 }
        }
        return required == requiredCount
    }

    private func check(_ object: [String: JSONValue], fields: [FieldRule], parent: String?, _ errors: inout [FieldError]) {
        for field in fields {
            // JSON's null is SQL's NULL, which the seeds' optional columns hold (seed 003 §3.4: "quality_status IS NULL
            // OR …"; a machine's first status has no previous one): an optional field sent as null is one not sent.
            let sent = object[field.name]
            guard let value = sent, value != .null else {
                if field.required {
                    errors.append(FieldError(
                        field: parent.map { "\($0).\(field.name)" } ?? field.path,
                        reason: field.kind.missingReason + (sent == nil ? "" : " (null is no value)")))
                }
                continue
            }
            check(value, kind: field.kind, path: parent.map { "\($0).\(field.name)" } ?? field.path, &errors)
        }
    }

    /// `path` is built only for an error (or to descend): most values pass.
    private func check(_ value: JSONValue, kind: FieldKind, path: @autoclosure () -> String, _ errors: inout [FieldError]) {
        switch kind {
        case .any:
            return
        case .enumeration(let values, let list):
            guard case .string(let text) = value else {
                errors.append(FieldError(field: path(), reason: "must be a string, got \(value.typeName); allowed: \(list)"))
                return
            }
            if !values.contains(text) {
                errors.append(FieldError(field: path(), reason: "unknown value '\(text.prefix(64))'; allowed: \(list)"))
            }
        case .number(let bounds):
            guard case .number(let number) = value, number.isFinite else {
                errors.append(FieldError(field: path(), reason: "must be a number, got \(value.typeName)"))
                return
            }
            if let reason = bounds.violation(number) { errors.append(FieldError(field: path(), reason: reason)) }
        case .string(let length):
            guard case .string(let text) = value else {
                errors.append(FieldError(field: path(), reason: length.typeReason(got: value.typeName)))
                return
            }
            if let reason = length.violation(text) { errors.append(FieldError(field: path(), reason: reason)) }
        case .boolean:
            guard case .bool = value else {
                errors.append(FieldError(field: path(), reason: "must be true or false, got \(value.typeName)"))
                return
            }
        case .timestamp:
            guard case .string(let text) = value else {
                errors.append(FieldError(
                    field: path(), reason: "must be an ISO-8601 date-time with a zone (e.g. 2025-11-18T14:23:45.678Z), got \(value.typeName)"))
                return
            }
            // The envelope's rule, not Foundation's parser, which rolls impossible fields over (2025-02-30 is March 2nd,
            // T24:00 the next day) where a dashboard's `Date` reads Invalid Date.
            if let problem = Timestamps.problem(text) { errors.append(FieldError(field: path(), reason: "'\(text.prefix(64))' \(problem)")) }
        case .object(let fields):
            guard case .object(let members) = value else {
                errors.append(FieldError(field: path(), reason: "must be an object, got \(value.typeName)"))
                return
            }
            check(members, fields: fields, parent: path(), &errors)
        case .array(let items, let count):
            guard case .array(let elements) = value else {
                errors.append(FieldError(field: path(), reason: "must be an array, got \(value.typeName)"))
                return
            }
            if let reason = count.violation(elements.count) { errors.append(FieldError(field: path(), reason: reason)) }
            guard let items else { return }
            let prefix = path()
            for (index, element) in elements.enumerated() { check(element, kind: items, path: "\(prefix)[\(index)]", &errors) }
        }
    }
}

/// One declared field of `data` (or of an object inside it).
final class FieldRule: Sendable {
    let name: String
    /// `data.<name>` for top-level fields, built once.
    let path: String
    let required: Bool
    let kind: FieldKind

    init(name: String, path: String, required: Bool, kind: FieldKind) {
        self.name = name
        self.path = path
        self.required = required
        self.kind = kind
    }
}

/// Why a value cannot stand as a `data` field (`DataSchema.problem(withField:value:)`).
public enum FieldProblem: Sendable, Equatable {
    /// The schema declares no field of that name; these are the ones it declares.
    case undeclared([String])
    case invalid(FieldError)
}

enum FieldKind: Sendable {
    /// Declared for documentation only: any JSON value.
    case any
    /// `values` joined for the reasons, once.
    case enumeration([String], list: String)
    case number(NumberBounds)
    case string(LengthBounds)
    case boolean
    /// An ISO-8601 date-time with a zone, like the envelope's `timestamp`.
    case timestamp
    case object([FieldRule])
    /// Elements checked against `items` when declared.
    indirect case array(items: FieldKind?, count: LengthBounds)

    var missingReason: String {
        if case .enumeration(_, let list) = self { return "is required; allowed: \(list)" }
        return "is required"
    }
}

struct NumberBounds: Sendable {
    var minimum: Double?
    var maximum: Double?
    var integer = false

    func violation(_ number: Double) -> String? {
        if integer, number.rounded() != number { return "must be a whole number (got \(Self.format(number)))" }
        let low = minimum.map { number >= $0 } ?? true
        let high = maximum.map { number <= $0 } ?? true
        if low && high { return nil }
        let rule: String = switch (minimum, maximum) {
        case (let minimum?, let maximum?): "must be between \(Self.format(minimum)) and \(Self.format(maximum))"
        case (0?, nil): "cannot be negative"
        case (let minimum?, nil): "must be at least \(Self.format(minimum))"
        case (nil, let maximum?): "must be at most \(Self.format(maximum))"
        case (nil, nil): ""
        }
        return "\(rule) (got \(Self.format(number)))"
    }

    static func format(_ number: Double) -> String {
        number.rounded() == number && abs(number) < 1e15 ? String(Int64(number)) : String(number)
    }
}

/// Bounds on a string's length (in characters) or an array's element count.
struct LengthBounds: Sendable {
    var minimum: Int?
    var maximum: Int?

    var isUnbounded: Bool { minimum == nil && maximum == nil }

    /// `a non-empty string`, `a string of 1-64 characters`, …
    var stringDescription: String {
        switch (minimum, maximum) {
        case (1?, nil): "a non-empty string"
        case (let minimum?, let maximum?): "a string of \(minimum)-\(maximum) characters"
        case (let minimum?, nil): "a string of at least \(minimum) characters"
        case (nil, let maximum?): "a string of at most \(maximum) characters"
        case (nil, nil): "a string"
        }
    }

    func typeReason(got typeName: String) -> String {
        // A bounded string's reason reads as the seed 003 alert's did: `must be a non-empty string`.
        isUnbounded ? "must be a string, got \(typeName)" : "must be \(stringDescription)"
    }

    func violation(_ text: String) -> String? {
        guard !isUnbounded else { return nil }
        let count = text.count
        if let minimum, count < minimum { return "must be \(stringDescription)" }
        if let maximum, count > maximum { return "must be \(stringDescription) (got \(count))" }
        return nil
    }

    func violation(_ count: Int) -> String? {
        switch (minimum, maximum) {
        case (let minimum?, _) where count < minimum: "must have at least \(minimum) element\(minimum == 1 ? "" : "s") (got \(count))"
        case (_, let maximum?) where count > maximum: "must have at most \(maximum) element\(maximum == 1 ? "" : "s") (got \(count))"
        default: nil
        }
    }
}

/// The rules across fields that the seeds state, as a small declared set of kinds (`rules:` in a catalog).
enum CrossFieldRule: Sendable {
    /// `less_or_equal: [a, b]`: when both are numbers that passed their own rules, a ≤ b
    /// (seed 003 §9.1: `quantity_produced` ≤ `quantity_ordered`). A name may be the dotted path of a field of an
    /// object inside `data` (`serial_range.start`).
    case lessOrEqual(String, String)
    /// `at_least_one_of: [a, b, …]`: at least one is a non-empty string (seed 003 §3.5: an allocation names
    /// an operator, a machine, or both).
    case atLeastOneOf([String])

    static let kinds = ["less_or_equal", "at_least_one_of"]

    var fields: [String] {
        switch self {
        case .lessOrEqual(let first, let second): [first, second]
        case .atLeastOneOf(let names): names
        }
    }

    /// `name` in `data`, or the member its dotted path reaches through nested objects. A top-level name is one
    /// lookup, so the seed 003 rules cost what they did.
    static func value(at name: String, in data: [String: JSONValue]) -> JSONValue? {
        if let value = data[name] { return value }
        guard name.contains(".") else { return nil }
        var current = JSONValue.object(data)
        for component in name.split(separator: ".") {
            guard case .object(let members) = current, let next = members[String(component)] else { return nil }
            current = next
        }
        return current
    }

    func check(_ data: [String: JSONValue], entityName: String, _ errors: inout [FieldError]) {
        switch self {
        case .lessOrEqual(let smaller, let larger):
            // Only between values that are themselves valid: a bad value already has its own error.
            guard case .number(let first)? = Self.value(at: smaller, in: data), case .number(let second)? = Self.value(at: larger, in: data),
                first.isFinite,
                second.isFinite, first > second, !errors.contains(where: { $0.field == "data.\(smaller)" || $0.field == "data.\(larger)" })
            else { return }
            errors.append(FieldError(field: "data.\(smaller)", reason: "cannot exceed data.\(larger) (\(NumberBounds.format(second)))"))
        case .atLeastOneOf(let names):
            let present = names.contains { name in
                if case .string(let text)? = data[name] { return !text.isEmpty }
                return false
            }
            guard !present, let first = names.first else { return }
            let listed = names.map { "data.\($0)" }
            let choice = listed.count == 2 ? "\(listed[0]) or \(listed[1])" : listed.dropLast().joined(separator: ", ") + " or \(listed.last!)"
            let article = entityName.first.map { "aeiou".contains($0) } == true ? "an" : "a"
            errors.append(FieldError(
                field: "data.\(first)", reason: "\(article) \(entityName) names \(choice) (a string), or \(listed.count == 2 ? "both" : "several")"))
        }
    }
}
