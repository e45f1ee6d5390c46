//! HTTP dates (`Retry-After`, `Last-Modified`) read as Go's `http.ParseTime` reads them.
//!
//! RFC 9110 §5.6.7 asks recipients to accept three formats, and Go's net/http (so BuildKit, whose
//! `ADD <url>` mtimes kiln reproduces) accepts exactly these layouts: RFC 1123
//! (`Sun, 06 Nov 1994 08:49:37 GMT`), RFC 850 (`Sunday, 06-Nov-94 08:49:37 GMT`, two-digit years
//! 69–99 in the 1900s, any upper-case zone name read as UTC) and ANSI C `asctime`
//! (`Sun Nov  6 08:49:37 1994`). Like Go, the weekday name is not checked against the date, and
//! dates before 1970 are valid. The calendar (month lengths, leap years, seconds since the epoch)
//! is the `time` crate's; the layouts are matched here because no crate reads them Go's way: the
//! `httpdate` crate rejects a weekday that does not match the date and any year before 1970, and
//! `time`'s format descriptions have no two-digit year with Go's pivot nor a free zone name.

use time::{Date, Month, PrimitiveDateTime, Time};

const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const LONG_DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// An HTTP date in seconds since the Unix epoch (negative before it), or `None` if `value` is
/// not one.
pub fn parse_http_date(value: &str) -> Option<i64> {
    let fields: Vec<&str> = value.split_whitespace().collect();
    let (day, month, year, time): (&str, &str, i32, &str) = match fields.as_slice() {
        // RFC 1123, the only format servers should send.
        [weekday, day, month, year, time, "GMT"]
            if DAYS.contains(&weekday.strip_suffix(',')?) && year.len() == 4 =>
        {
            (day, month, year.parse().ok()?, time)
        }
        // RFC 850: two-digit years, 69–99 in the 1900s (Go's rule).
        [weekday, date, time, zone]
            if LONG_DAYS.contains(&weekday.strip_suffix(',')?)
                && zone.chars().all(|c| c.is_ascii_uppercase()) =>
        {
            let mut parts = date.split('-');
            let (day, month, yy) = (parts.next()?, parts.next()?, parts.next()?);
            if parts.next().is_some() || yy.len() != 2 {
                return None;
            }
            let yy: i32 = yy.parse().ok()?;
            let year = if yy >= 69 { 1900 + yy } else { 2000 + yy };
            (day, month, year, time)
        }
        // asctime.
        [weekday, month, day, time, year] if DAYS.contains(weekday) && year.len() == 4 => {
            (day, month, year.parse().ok()?, time)
        }
        _ => return None,
    };
    let month = MONTHS.iter().position(|m| *m == month)? as u8 + 1;
    let number = |s: &str| -> Option<u8> {
        let ok = (1..=2).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
        ok.then(|| s.parse().ok()).flatten()
    };
    let date = Date::from_calendar_date(year, Month::try_from(month).ok()?, number(day)?).ok()?;
    let mut hms = time.split(':');
    let (h, m, s) = (hms.next()?, hms.next()?, hms.next()?);
    if hms.next().is_some() || [h, m, s].iter().any(|f| f.len() != 2) {
        return None;
    }
    let time = Time::from_hms(number(h)?, number(m)?, number(s)?).ok()?;
    Some(
        PrimitiveDateTime::new(date, time)
            .assume_utc()
            .unix_timestamp(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates() {
        let cases = [
            ("Sun, 06 Nov 1994 08:49:37 GMT", Some(784_111_777)),
            ("Sunday, 06-Nov-94 08:49:37 GMT", Some(784_111_777)),
            ("Sun Nov  6 08:49:37 1994", Some(784_111_777)),
            ("Thu, 01 Jan 1970 00:00:00 GMT", Some(0)),
            ("Thu, 29 Feb 2024 12:00:00 GMT", Some(1_709_208_000)),
            // The weekday is not checked (29 February 2024 was a Thursday).
            ("Wed, 29 Feb 2024 23:59:59 GMT", Some(1_709_251_199)),
            ("Monday, 01-Jan-68 00:00:00 GMT", Some(3_092_601_600)),
            ("Wednesday, 01-Jan-69 00:00:00 GMT", Some(-31_536_000)),
            ("Thu, 31 Dec 1969 23:59:59 GMT", Some(-1)),
            ("Sun, 06 Nov 1994 08:49:37 UTC", None),
            ("Sun, 31 Nov 1994 08:49:37 GMT", None),
            ("Fri, 29 Feb 2023 08:49:37 GMT", None),
            ("Sun, 06 Nov 1994 24:00:00 GMT", None),
            ("Sun, 06 Nov 1994 08:60:00 GMT", None),
            ("Sun, 06 Nov 1994 08:49:60 GMT", None),
            ("Sun, 006 Nov 1994 08:49:37 GMT", None),
            ("Xyz, 06 Nov 1994 08:49:37 GMT", None),
            ("Sun, 06 Foo 1994 08:49:37 GMT", None),
            ("1994-11-06T08:49:37Z", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_http_date(text), want, "{text:?}");
        }
    }
}
