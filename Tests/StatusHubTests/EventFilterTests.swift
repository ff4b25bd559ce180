import Foundation
import StatusHubCore
import Testing

@Suite("Subscribe filters: grammar, meaning and refusals")
struct EventFilterTests {
    static func event(_ json: String) -> JSONValue { try! JSONValue.parse(Array(json.utf8)) }

    static let breakdown = event(#"{"event_type":"resource_status_changed","line":"Line-2","data":{"current_status":"breakdown","oee_percentage":41.5},"metadata":{"source":"mes"}}"#)
    static let alert = event(#"{"event_type":"alert_raised","line":"Line-3","data":{"severity":"critical","message":"fire"}}"#)

    @Test(arguments: [
        ("data.severity in (high, critical)", false, true),
        ("data.current_status = breakdown", true, false),
        ("data.current_status != breakdown", false, true),
        ("data.oee_percentage < 50", true, false),
        ("data.oee_percentage >= 41.5 and line = Line-2", true, false),
        ("data.oee_percentage > 50", false, false),
        ("line not in ('Line-2', \"Line-9\")", false, true),
        ("data.severity exists", false, true),
        ("data.severity missing", true, false),
        ("event_type = alert_raised AND data.severity IN (critical)", false, true),
        ("metadata.source = 'mes'", true, false),
        ("line >= Line-3", false, true),
    ])
    func admitsWhatItSays(_ text: String, _ admitsBreakdown: Bool, _ admitsAlert: Bool) throws {
        let filter = try EventFilter.parse(text)
        #expect(filter.admits(Self.breakdown) == admitsBreakdown)
        #expect(filter.admits(Self.alert) == admitsAlert)
        #expect(try EventFilter.parse(filter.canonical) == filter)
    }

    @Test func twoSpellingsShareOneNormalForm() throws {
        let spaced = try EventFilter.parse("  data.severity   IN('high','critical')  and line=Line-2 ")
        let plain = try EventFilter.parse(#"data.severity in (high, critical) and line = "Line-2""#)
        #expect(spaced == plain)
        #expect(spaced.canonical == #"data.severity in ("high", "critical") and line = "Line-2""#)
    }

    @Test(arguments: [
        ("", "filter is empty"),
        ("severity = high", "'severity' is not an event field"),
        ("data.severity", "expected an operator after 'data.severity'"),
        ("data.severity == high", "at byte 15: expected a value"),
        ("data.severity in high", "expected '(' to open the list"),
        ("data.severity in (high", "expected ',' or ')'"),
        ("data.severity = 'high", "unterminated quoted value"),
        ("data.x = 1 or data.y = 2", "expected 'and' or the end of the filter, got 'or'"),
        ("data..x = 1", "has an empty part"),
        ("data.x not = 1", "expected 'in' after 'not'"),
    ])
    func refusesNamingWhatIsWrong(_ text: String, _ reason: String) {
        #expect(throws: EventFilter.ParseError.self) { try EventFilter.parse(text) }
        do {
            _ = try EventFilter.parse(text)
        } catch {
            #expect(error.reason.contains(reason), "\(error.reason)")
        }
    }

    /// Numbers are JSON's decimal numbers, as in the events: Swift's `Double(String)` also read `0x10` as 16 and
    /// `00012` as 12. Those are refused, saying why; a word that is no number at all stays text.
    @Test func onlyJSONNumbersAreNumbers() throws {
        let sixteen = Self.event(#"{"data":{"x":16,"code":"00012","day":"2025-01-01"}}"#)
        #expect(try EventFilter.parse("data.x = 16").admits(sixteen))
        #expect(try EventFilter.parse("data.x = 1.6e1").admits(sixteen))
        #expect(try EventFilter.parse("data.x > -0.5").admits(sixteen))
        #expect(try EventFilter.parse("data.code = '00012'").admits(sixteen))
        #expect(try EventFilter.parse("data.day = 2025-01-01").admits(sixteen))
        for text in ["data.x = 0x10", "data.x = 00016", "data.x = 16.", "data.x > 1e999", "data.x in (1, 0x10)", "data.x = -016"] {
            do {
                let filter = try EventFilter.parse(text)
                Issue.record("\(text) was taken as \(filter.canonical)")
            } catch {
                #expect(error.reason.contains("is not a JSON number"), "\(text): \(error.reason)")
            }
        }
    }

    @Test func limitsAreRefused() {
        let long = "data.x = " + String(repeating: "a", count: 1100)
        #expect(throws: EventFilter.ParseError.self) { try EventFilter.parse(long) }
        let many = (0...16).map { "data.x\($0) = 1" }.joined(separator: " and ")
        #expect(throws: EventFilter.ParseError.self) { try EventFilter.parse(many) }
    }

    @Test func subscribeCarriesTheFilterOrRefusesItAsInvalidFilter() {
        let good = ClientMessage.decode(Array(#"{"op":"subscribe","id":"a","channels":["alerts"],"filter":"data.severity = high"}"#.utf8))
        guard case .success(.subscribe(_, _, _, _, let filter?, _)) = good else {
            Issue.record("filter not carried: \(good)")
            return
        }
        #expect(filter.canonical == #"data.severity = "high""#)
        let bad = ClientMessage.decode(Array(#"{"op":"subscribe","id":"b","channels":["alerts"],"filter":"severity = high"}"#.utf8))
        guard case .failure(let refusal) = bad else {
            Issue.record("bad filter accepted")
            return
        }
        #expect(refusal.code == .invalidFilter && refusal.id == "b")
        #expect(refusal.message.contains("'severity' is not an event field"))
        let mistyped = ClientMessage.decode(Array(#"{"op":"subscribe","channels":["alerts"],"filter":7}"#.utf8))
        guard case .failure(let typed) = mistyped else {
            Issue.record("numeric filter accepted")
            return
        }
        #expect(typed.code == .invalidFilter)
    }
}
