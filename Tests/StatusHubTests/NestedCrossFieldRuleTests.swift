import Foundation
import StatusHubCore
import Testing

/// `less_or_equal` between fields of an object inside `data` (seed 000's `serial_range`), by dotted path.
@Suite struct NestedCrossFieldRuleTests {
    @Test func dottedPathsCompareNestedFields() throws {
        let catalog = try CatalogTests.catalog("""
              batch_recorded:
                category: quality
                entity_types: [lot]
                data:
                  serial_range: {type: object, fields: {start: {type: integer, min: 0}, end: {type: integer, min: 0}}}
                rules: [{less_or_equal: [serial_range.start, serial_range.end]}]
            """)
        let validator = EventValidator(catalog: catalog)
        func errors(_ data: String) -> [FieldError] {
            let json = #"{"event_type":"batch_recorded","entity_type":"lot","entity_id":"B-1","timestamp":"2025-11-18T14:23:45Z","data":\#(data),"metadata":{"source":"mes","triggered_by":"user"}}"#
            if case .invalid(let errors) = validator.validate(try! JSONValue.parse(Array(json.utf8)), receivedAt: Date()) { return errors }
            return []
        }
        #expect(errors(#"{"serial_range":{"start":1000,"end":1424}}"#).isEmpty)
        #expect(errors(#"{"serial_range":{"start":1000}}"#).isEmpty)
        let refused = errors(#"{"serial_range":{"start":1849,"end":1425}}"#)
        #expect(refused.map(\.field) == ["data.serial_range.start"])
        #expect(refused.first?.reason == "cannot exceed data.serial_range.end (1425)")
        // One error per bad value: a negative start is refused by its own rule, not compared as well.
        #expect(errors(#"{"serial_range":{"start":-1,"end":-5}}"#).map(\.field) == ["data.serial_range.start", "data.serial_range.end"])

        let unknown = CatalogTests.refusal("""
              batch_recorded:
                category: quality
                entity_types: [lot]
                data: {serial_range: {type: object, fields: {start: {type: integer}}}}
                rules: [{less_or_equal: [serial_range.start, serial_range.stop]}]
            """)
        #expect(unknown?.path == "event_types.batch_recorded.rules[0].less_or_equal")
        #expect(unknown?.reason == "names 'serial_range.stop', which data does not declare")
    }
}
