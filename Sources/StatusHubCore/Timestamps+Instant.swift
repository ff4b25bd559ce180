import Foundation

extension Timestamps.Moment {
    /// Whole seconds from 0000-03-01T00:00:00Z to this moment in UTC (the zone's offset applied): the instant
    /// `SourceOrder` ranks by and the validator's clock bound measures.
    var secondsSinceCivilOrigin: Int {
        // Days since 0000-03-01 (the civil-from-days algorithm run backwards; March first puts leap days last).
        let shiftedYear = month <= 2 ? year - 1 : year
        let era = shiftedYear / 400
        let yearOfEra = shiftedYear - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        let days = era * 146_097 + dayOfEra
        return days * 86_400 + hour * 3600 + minute * 60 + second - offsetSeconds
    }

    /// Seconds since 1970-01-01T00:00:00Z, the fraction included.
    public var secondsSince1970: Double {
        // 1970-01-01 is day 719,468 after 0000-03-01.
        let whole = secondsSinceCivilOrigin - 719_468 * 86_400
        var fractionValue = 0.0
        var scale = 0.1
        for digit in fraction {
            fractionValue += Double(digit - UInt8(ascii: "0")) * scale
            scale /= 10
        }
        return Double(whole) + fractionValue
    }
}
