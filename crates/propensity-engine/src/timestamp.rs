//! RFC 3339 timestamps: parsing the wire format into epoch milliseconds and
//! formatting milliseconds back. Hand-written because it sits on the hot path
//! of every event and must never panic on hostile input.
//!
//! Accepted: `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, with `t`/space as
//! the separator and `z` as well (RFC 3339 §5.6 allows both). Fractions beyond
//! milliseconds are truncated. The UTC offset is kept, because the local hour
//! of day is a feature and only the offset tells it.

/// A parsed event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EventTime {
    /// Milliseconds since the Unix epoch, UTC.
    pub epoch_ms: i64,
    /// The writer's UTC offset in minutes (0 for `Z`).
    pub offset_minutes: i16,
}

impl EventTime {
    /// Milliseconds since the epoch in the writer's local time, for
    /// hour-of-day and weekday features.
    pub fn local_ms(&self) -> i64 {
        self.epoch_ms + i64::from(self.offset_minutes) * 60_000
    }
}

/// Parses an RFC 3339 timestamp; `None` when it is not one.
pub fn parse_rfc3339(s: &str) -> Option<EventTime> {
    let b = s.as_bytes();
    if b.len() < 20 || b.len() > 40 {
        return None;
    }
    let year = digits(b, 0, 4)?;
    let month = digits(b, 5, 2)?;
    let day = digits(b, 8, 2)?;
    let hour = digits(b, 11, 2)?;
    let minute = digits(b, 14, 2)?;
    let second = digits(b, 17, 2)?;
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    // A leap second (60) is valid RFC 3339; it is folded into the next second.
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                millis = millis * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 {
            return None;
        }
        for _ in n..3 {
            millis *= 10;
        }
    }
    let offset_minutes: i64 = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let oh = digits(b, i + 1, 2)?;
            let om = digits(b, i + 4, 2)?;
            if oh > 23 || om > 59 {
                return None;
            }
            let m = oh * 60 + om;
            if *sign == b'-' {
                -m
            } else {
                m
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let local_secs = days * 86_400 + hour * 3600 + minute * 60 + second;
    let epoch_ms = (local_secs - offset_minutes * 60) * 1000 + millis;
    Some(EventTime {
        epoch_ms,
        offset_minutes: offset_minutes as i16,
    })
}

/// Formats epoch milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_rfc3339_ms(epoch_ms: i64) -> String {
    let days = epoch_ms.div_euclid(86_400_000);
    let ms_of_day = epoch_ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    let secs = ms_of_day / 1000;
    if (0..=9999).contains(&y) {
        // Four-digit years (every time RFC 3339 can express) are written
        // digit by digit, as `format!` below would write them; offers and
        // scores format two of these each.
        let mut out = String::with_capacity(24);
        for (v, n, sep) in [
            (y, 4, '-'),
            (m, 2, '-'),
            (d, 2, 'T'),
            (secs / 3600, 2, ':'),
            (secs / 60 % 60, 2, ':'),
            (secs % 60, 2, '.'),
            (ms_of_day % 1000, 3, 'Z'),
        ] {
            for k in (0..n).rev() {
                out.push(char::from(b'0' + (v / 10i64.pow(k) % 10) as u8));
            }
            out.push(sep);
        }
        return out;
    }
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        ms_of_day % 1000
    )
}

/// The UTC calendar month of epoch ms, counted from January 1970 (= 0).
pub fn utc_month_index(epoch_ms: i64) -> i64 {
    let (y, m, _) = civil_from_days(epoch_ms.div_euclid(86_400_000));
    (y - 1970) * 12 + (m - 1)
}

/// Hour of day (0–23) and weekday (0 = Monday … 6 = Sunday) of local epoch ms.
pub fn hour_and_weekday(local_ms: i64) -> (u32, u32) {
    let c = calendar(local_ms);
    (c.hour, c.weekday)
}

/// The calendar fields of an instant that features use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Calendar {
    /// Hour of day, 0–23.
    pub hour: u32,
    /// Weekday, 0 = Monday … 6 = Sunday.
    pub weekday: u32,
    /// Month, 1–12.
    pub month: u32,
}

/// Hour, weekday and month of local epoch ms.
pub fn calendar(local_ms: i64) -> Calendar {
    let days = local_ms.div_euclid(86_400_000);
    let hour = (local_ms.rem_euclid(86_400_000) / 3_600_000) as u32;
    // 1970-01-01 was a Thursday (weekday 3 counting from Monday = 0).
    let weekday = (days + 3).rem_euclid(7) as u32;
    let (_, month, _) = civil_from_days(days);
    Calendar {
        hour,
        weekday,
        month: month as u32,
    }
}

fn digits(b: &[u8], at: usize, n: usize) -> Option<i64> {
    let mut v = 0i64;
    for &c in b.get(at..at + n)? {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(c - b'0');
    }
    Some(v)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_instants() {
        let t = parse_rfc3339("2026-11-29T10:00:00.123Z").unwrap();
        assert_eq!(t.epoch_ms, 1_795_946_400_123);
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z").unwrap().epoch_ms, 0);
        let leap = parse_rfc3339("2024-02-29T23:59:59.999Z").unwrap();
        assert_eq!(leap.epoch_ms, 1_709_251_199_999);
        let off = parse_rfc3339("2026-11-29T11:00:00.123+01:00").unwrap();
        assert_eq!(off.epoch_ms, 1_795_946_400_123);
        assert_eq!(off.offset_minutes, 60);
        assert_eq!(
            parse_rfc3339("2026-11-29T10:00:00.1234567Z")
                .unwrap()
                .epoch_ms,
            1_795_946_400_123
        );
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "2026-11-29",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-11-29T24:00:00Z",
            "2026-11-29T10:00:00",
            "2026-11-29T10:00:00.Z",
            "2026-11-29T10:00:00+0100",
            "2026-11-29T10:00:00Zjunk",
            "２０２６-11-29T10:00:00Z",
        ] {
            assert!(parse_rfc3339(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn formats_round_trip() {
        for ms in [0, 1_709_251_199_999, 1_795_946_400_123, -1, 951_782_400_000] {
            let s = format_rfc3339_ms(ms);
            assert_eq!(parse_rfc3339(&s).unwrap().epoch_ms, ms, "{s}");
        }
        assert_eq!(format_rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        // The digit-by-digit path writes what `format!` writes.
        let reference = |ms: i64| {
            let days = ms.div_euclid(86_400_000);
            let ms_of_day = ms.rem_euclid(86_400_000);
            let (y, m, d) = civil_from_days(days);
            let secs = ms_of_day / 1000;
            format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
                secs / 3600,
                secs / 60 % 60,
                secs % 60,
                ms_of_day % 1000
            )
        };
        for ms in [
            0,
            -1,
            1_795_946_400_123,
            253_402_300_799_999,
            253_402_300_800_000,
            -62_167_219_200_000,
            -62_167_219_200_001,
            i64::MAX,
            i64::MIN,
        ] {
            assert_eq!(format_rfc3339_ms(ms), reference(ms), "{ms}");
        }
    }

    #[test]
    fn weekday_and_hour() {
        // 2026-11-29 is a Sunday.
        let t = parse_rfc3339("2026-11-29T10:30:00Z").unwrap();
        assert_eq!(hour_and_weekday(t.local_ms()), (10, 6));
        assert_eq!(
            calendar(t.local_ms()),
            Calendar {
                hour: 10,
                weekday: 6,
                month: 11
            }
        );
        // The last millisecond of a year and the first of the next.
        let new_year = parse_rfc3339("2027-01-01T00:00:00Z").unwrap().epoch_ms;
        assert_eq!(calendar(new_year - 1).month, 12);
        assert_eq!(calendar(new_year).month, 1);
    }
}
