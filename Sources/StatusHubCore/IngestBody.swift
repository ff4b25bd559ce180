import Foundation

/// How `POST /v1/events` bodies are framed, by `Content-Type`.
public enum IngestBodyFormat: Sendable {
    /// One event object, or an array of them.
    case json
    /// One event per line.
    case ndjson

    public static let supported = "application/json, application/x-ndjson"

    /// Media type without parameters (`application/json; charset=utf-8` is JSON).
    public init?(contentType: String?) {
        // What publishers send, matched without Foundation's trimming and lowercasing (2.5 % of a single POST).
        switch contentType {
        case "application/json"?: self = .json; return
        case "application/x-ndjson"?: self = .ndjson; return
        default: break
        }
        let mediaType = contentType?.split(separator: ";").first?.trimmingCharacters(in: .whitespaces).lowercased()
        switch mediaType {
        case "application/json": self = .json
        case "application/x-ndjson", "application/ndjson": self = .ndjson
        default: return nil
        }
    }
}

/// Why a whole body was refused before any event in it could be looked at.
public enum IngestBodyError: Error, Equatable, Sendable {
    /// 400: nothing in it is an event.
    case malformed(FieldError)
    /// 413: more events than `server.max_batch_events`.
    case tooManyEvents(count: Int, limit: Int)
}

/// Splits a body into its events, each decoded on its own so one bad NDJSON line refuses only itself.
public enum IngestBody {
    public static func decode(
        _ body: some Collection<UInt8>, format: IngestBodyFormat, maxEvents: Int
    ) throws(IngestBodyError) -> [Result<JSONValue, FieldError>] {
        let events: [Result<JSONValue, FieldError>]
        switch format {
        case .json:
            let value: JSONValue
            do {
                value = try JSONValue.parse(body)
            } catch {
                throw .malformed(FieldError(field: "body", reason: "\(error.isLimit ? "is over a limit" : "is not valid JSON"): \(error)"))
            }
            switch value {
            case .array(let elements):
                guard !elements.isEmpty else { throw .malformed(FieldError(field: "body", reason: "is an empty array: no events")) }
                events = elements.map { .success($0) }
            case .object:
                events = [.success(value)]
            default:
                throw .malformed(FieldError(field: "body", reason: "must be an event object or an array of events, got \(value.typeName)"))
            }
        case .ndjson:
            // Split a concrete array: a generic collection from another module would be walked through witness
            // calls byte by byte.
            // Each event line with its number in the body, blank lines counted (an editor's line number), though
            // they are no event and take no index.
            let lines = Array(body).split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).enumerated()
                .map { (number: $0.offset + 1, text: $0.element.last == UInt8(ascii: "\r") ? $0.element.dropLast() : $0.element[...]) }
                .filter { !$0.text.allSatisfy { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") } }
            guard !lines.isEmpty else { throw .malformed(FieldError(field: "body", reason: "has no event lines")) }
            guard lines.count <= maxEvents else { throw .tooManyEvents(count: lines.count, limit: maxEvents) }
            events = lines.map { line in
                do throws(JSONParseError) {
                    return .success(try JSONValue.parse(line.text))
                } catch {
                    return .failure(FieldError(
                        field: "event", reason: "line \(line.number) \(error.isLimit ? "is over a limit" : "is not valid JSON"): \(error)"))
                }
            }
        }
        guard events.count <= maxEvents else { throw .tooManyEvents(count: events.count, limit: maxEvents) }
        return events
    }
}

/// The answer to `POST /v1/events`: which events were accepted (with their ids) and which refused (and why).
public struct IngestReply: Encodable, Sendable, Equatable {
    public struct Accepted: Encodable, Sendable, Equatable {
        public var index: Int
        public var event_id: String
        /// Present (true) when this was a retry of an already accepted event: nothing was stored again.
        public var duplicate: Bool?
        /// Present (true) when it was stored but is older by source time than its entity's cached state.
        public var late: Bool?
        /// Present (true) when it was stored as news because a hold on its entity kept its state out (`StateHold`).
        public var held: Bool?
    }

    public struct Rejected: Encodable, Sendable, Equatable {
        public var index: Int
        public var errors: [FieldError]
    }

    public var accepted: [Accepted] = []
    public var rejected: [Rejected] = []

    public init() {}

    public mutating func accept(index: Int, _ appended: Appended) {
        accepted.append(Accepted(index: index, event_id: appended.id.description, duplicate: appended.duplicate ? true : nil,
            late: appended.late ? true : nil, held: appended.held ? true : nil))
    }
    public mutating func reject(index: Int, errors: [FieldError]) { rejected.append(Rejected(index: index, errors: errors)) }

    /// The reply's bytes: what `JSONEncoder` with sorted keys writes (`JSONValueWritingTests`), through
    /// `JSONValue.write`, because the encoder was 4 % of a single-event POST. Each entry's members are listed in key
    /// order rather than put in a dictionary for the writer to sort: a batch's reply has one per event.
    public var json: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(24 + accepted.count * 48)
        out.append(contentsOf: #"{"accepted":["#.utf8)
        for (position, item) in accepted.enumerated() {
            if position > 0 { out.append(UInt8(ascii: ",")) }
            var members: [(key: String, value: JSONValue)] = []
            members.reserveCapacity(4)
            if let duplicate = item.duplicate { members.append(("duplicate", .bool(duplicate))) }
            members.append(("event_id", .string(item.event_id)))
            if let held = item.held { members.append(("held", .bool(held))) }
            members.append(("index", .number(Double(item.index))))
            if let late = item.late { members.append(("late", .bool(late))) }
            JSONValue.write(members: members, into: &out)
        }
        out.append(contentsOf: #"],"rejected":"#.utf8)
        JSONValue.array(rejected.map { item in
            .object([
                "index": .number(Double(item.index)),
                "errors": .array(item.errors.map { .object(["field": .string($0.field), "reason": .string($0.reason)]) }),
            ])
        }).write(into: &out)
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// 202 all accepted, 207 some, 400 none.
    public var statusCode: Int {
        if rejected.isEmpty { return 202 }
        return accepted.isEmpty ? 400 : 207
    }
}
