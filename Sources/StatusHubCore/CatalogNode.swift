import Foundation
import Yams

/// A position in a catalog file: the YAML node, its file and key path, so every refusal can say where.
struct CatalogNode {
    let node: Node
    let file: String
    let path: String

    func error(_ reason: String) -> CatalogError {
        CatalogError(file: file, path: path, line: node.mark?.line, reason: reason)
    }

    func child(_ key: String, _ node: Node) -> CatalogNode {
        CatalogNode(node: node, file: file, path: path.isEmpty ? key : "\(path).\(key)")
    }

    /// The members of a mapping in file order, refusing a key given twice (YAML parsers keep the last one, so a
    /// duplicated event type would silently replace the first).
    func members(allowed: [String]? = nil) throws -> [(key: String, value: CatalogNode)] {
        guard case .mapping(let mapping) = node else { throw error("must be a mapping, got \(kind)") }
        var seen = Set<String>()
        var result: [(key: String, value: CatalogNode)] = []
        for (keyNode, valueNode) in mapping {
            guard case .scalar(let scalar) = keyNode else { throw error("keys must be plain names") }
            let key = scalar.string
            let member = child(key, valueNode)
            guard seen.insert(key).inserted else {
                throw CatalogError(file: file, path: member.path, line: keyNode.mark?.line, reason: "declared twice")
            }
            if let allowed, !allowed.contains(key) {
                throw CatalogError(
                    file: file, path: member.path, line: keyNode.mark?.line,
                    reason: "unknown key '\(key)'; known: \(allowed.joined(separator: ", "))")
            }
            result.append((key, member))
        }
        return result
    }

    func list() throws -> [CatalogNode] {
        guard case .sequence(let sequence) = node else { throw error("must be a list, got \(kind)") }
        return sequence.enumerated().map { CatalogNode(node: $1, file: file, path: "\(path)[\($0)]") }
    }

    var isNull: Bool { if case .scalar = node { return node.null != nil } else { return false } }

    func string() throws -> String {
        guard case .scalar(let scalar) = node, !isNull else { throw error("must be a string, got \(kind)") }
        return scalar.string
    }

    func strings() throws -> [String] { try list().map { try $0.string() } }

    func bool() throws -> Bool {
        guard case .scalar = node, let value = node.any as? Bool else { throw error("must be true or false, got \(kind)") }
        return value
    }

    func number() throws -> Double {
        guard case .scalar = node else { throw error("must be a number, got \(kind)") }
        switch node.any {
        case let value as Int: return Double(value)
        case let value as Double where value.isFinite: return value
        default: throw error("must be a number, got \(kind)")
        }
    }

    func integer() throws -> Int {
        guard case .scalar = node, let value = node.any as? Int else { throw error("must be a whole number, got \(kind)") }
        return value
    }

    /// The node as JSON (example events, the declaration `GET /v1/catalog` returns). YAML timestamps stay the
    /// text they were written as.
    func json() throws -> JSONValue {
        switch node {
        case .scalar(let scalar):
            switch node.any {
            case is NSNull: return .null
            case let value as Bool: return .bool(value)
            case let value as Int: return .number(Double(value))
            case let value as Double where value.isFinite: return .number(value)
            case is String: return .string(scalar.string)
            default: return .string(scalar.string)
            }
        case .sequence:
            return .array(try list().map { try $0.json() })
        case .mapping:
            var object: [String: JSONValue] = [:]
            for (key, value) in try members() { object[key] = try value.json() }
            return .object(object)
        case .alias:
            throw error("YAML aliases are not supported in a catalog")
        }
    }

    var kind: String {
        switch node {
        case .mapping: "a mapping"
        case .sequence: "a list"
        case .alias: "an alias"
        case .scalar:
            switch node.any {
            case is NSNull: "nothing"
            case is Bool: "a boolean"
            case is Int, is Double: "a number"
            default: "a string"
            }
        }
    }
}
