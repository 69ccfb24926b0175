//! Timestamps as the simulator writes them: the engine's own RFC 3339
//! formatter (UTC, millisecond precision, the shape the wire contract
//! requires), so generated traffic and the engine agree on one calendar
//! algorithm, plus the range the simulator keeps its clock within.

/// Milliseconds in one UTC day (no leap seconds: epoch time ignores them).
pub const MS_PER_DAY: i64 = 86_400_000;

/// The first epoch millisecond that would need a five-digit year; formatted
/// timestamps are only RFC 3339 (four-digit year) for `0..MAX_EPOCH_MS`.
pub const MAX_EPOCH_MS: i64 = 253_402_300_800_000;

/// Formats epoch milliseconds as e.g. `2026-11-29T10:00:00.123Z`: exactly
/// three fractional digits and the `Z` suffix. Only valid RFC 3339 for years
/// 0000–9999, i.e. `epoch_ms` in `-62_167_219_200_000..MAX_EPOCH_MS`.
pub use propensity_engine::timestamp::format_rfc3339_ms as format_timestamp;

/// UTC hour of day (0–23) of an epoch-millisecond instant.
pub fn hour_of_day(epoch_ms: i64) -> u32 {
    propensity_engine::timestamp::hour_and_weekday(epoch_ms).0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Independent inverse (days-from-civil by counting), used to check the
    /// formatter the simulator relies on without trusting its algorithm.
    fn parse(ts: &str) -> i64 {
        let b = ts.as_bytes();
        assert_eq!(ts.len(), 24, "{ts}");
        assert_eq!(
            (b[4], b[7], b[10], b[13], b[16], b[19], b[23]),
            (b'-', b'-', b'T', b':', b':', b'.', b'Z')
        );
        let num = |r: std::ops::Range<usize>| ts[r].parse::<i64>().unwrap();
        let (y, mo, d) = (num(0..4), num(5..7), num(8..10));
        let (h, mi, s, ms) = (num(11..13), num(14..16), num(17..19), num(20..23));
        assert!((1..=12).contains(&mo) && (1..=31).contains(&d));
        assert!(h < 24 && mi < 60 && s < 60);
        let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let month_len = [
            31,
            if leap(y) { 29 } else { 28 },
            31,
            30,
            31,
            30,
            31,
            31,
            30,
            31,
            30,
            31,
        ];
        assert!(d <= month_len[(mo - 1) as usize]);
        let mut days: i64 = 0;
        if y >= 1970 {
            days += (1970..y)
                .map(|yy| if leap(yy) { 366 } else { 365 })
                .sum::<i64>();
        } else {
            days -= (y..1970)
                .map(|yy| if leap(yy) { 366 } else { 365 })
                .sum::<i64>();
        }
        days += month_len[..(mo - 1) as usize].iter().sum::<i64>() + d - 1;
        days * MS_PER_DAY + h * 3_600_000 + mi * 60_000 + s * 1000 + ms
    }

    #[test]
    fn known_dates() {
        let cases = [
            (0, "1970-01-01T00:00:00.000Z"),
            (1_709_251_199_999, "2024-02-29T23:59:59.999Z"),
            (1_709_251_200_000, "2024-03-01T00:00:00.000Z"),
            (951_782_400_000, "2000-02-29T00:00:00.000Z"),
            (1_793_610_000_000, "2026-11-02T09:00:00.000Z"),
            (1_798_761_599_999, "2026-12-31T23:59:59.999Z"),
            (-1, "1969-12-31T23:59:59.999Z"),
            (MAX_EPOCH_MS - 1, "9999-12-31T23:59:59.999Z"),
            (-62_167_219_200_000, "0000-01-01T00:00:00.000Z"),
        ];
        for (ms, want) in cases {
            assert_eq!(format_timestamp(ms), want, "{ms}");
            assert_eq!(parse(want), ms, "{want}");
        }
        // 2100 is not a leap year: Feb 28 is followed by Mar 1.
        assert_eq!(
            format_timestamp(parse("2100-02-28T12:00:00.000Z") + MS_PER_DAY),
            "2100-03-01T12:00:00.000Z"
        );
    }

    #[test]
    fn hour_of_day_wraps() {
        assert_eq!(hour_of_day(1_793_610_000_000), 9);
        assert_eq!(hour_of_day(-1), 23);
    }

    proptest! {
        #[test]
        fn round_trips(ms in -62_167_219_200_000i64..MAX_EPOCH_MS) {
            prop_assert_eq!(parse(&format_timestamp(ms)), ms);
        }

        #[test]
        fn preserves_order(a in 0i64..MAX_EPOCH_MS, b in 0i64..MAX_EPOCH_MS) {
            // Fixed-width output: lexicographic order equals time order.
            prop_assert_eq!(a.cmp(&b), format_timestamp(a).cmp(&format_timestamp(b)));
        }
    }
}
