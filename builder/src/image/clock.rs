//! The one clock kiln reads, and RFC 3339 formatting written by hand.
//!
//! Every timestamp kiln records (config `created`, history `created`) comes from [`now`], which
//! honours `SOURCE_DATE_EPOCH` (reproducible-builds.org: a decimal count of seconds since the Unix
//! epoch; a malformed value is an error, not a silent fallback to the wall clock). Formatting is
//! UTC with a `Z` suffix, as Go's `time.RFC3339Nano` prints it: whole seconds have no fraction and
//! a fraction has its trailing zeros trimmed. Years past 9999 cannot be written in RFC 3339, so a
//! [`Timestamp`] never holds one.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// The environment variable that pins every timestamp kiln writes.
pub const SOURCE_DATE_EPOCH: &str = "SOURCE_DATE_EPOCH";

const SECS_PER_DAY: u64 = 86_400;

/// A point in time at or after the Unix epoch, no later than 9999-12-31T23:59:59.999999999Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    secs: u64,
    nanos: u32,
}

/// Why a timestamp could not be produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClockError {
    /// `SOURCE_DATE_EPOCH` is not a plain decimal number of seconds.
    #[error("invalid SOURCE_DATE_EPOCH {value:?}: expected a decimal number of seconds")]
    InvalidSourceDateEpoch {
        /// The value as found in the environment.
        value: String,
    },
    /// The time is past what RFC 3339 can express (year 9999).
    #[error("timestamp {secs} is after 9999-12-31T23:59:59Z")]
    OutOfRange {
        /// Seconds since the Unix epoch.
        secs: u64,
    },
    /// Nanoseconds must be below one second.
    #[error("invalid nanoseconds {nanos}")]
    InvalidNanos {
        /// The rejected value.
        nanos: u32,
    },
    /// The system clock reads earlier than 1970.
    #[error("system clock is set before 1970")]
    BeforeEpoch,
}

impl Timestamp {
    /// The last second RFC 3339 can write: 9999-12-31T23:59:59Z.
    pub const MAX_SECS: u64 = 253_402_300_799;

    /// The Unix epoch, 1970-01-01T00:00:00Z.
    pub const EPOCH: Timestamp = Timestamp { secs: 0, nanos: 0 };

    /// A timestamp `secs` seconds and `nanos` nanoseconds after the Unix epoch.
    pub fn from_unix(secs: u64, nanos: u32) -> Result<Self, ClockError> {
        if nanos >= 1_000_000_000 {
            return Err(ClockError::InvalidNanos { nanos });
        }
        if secs > Self::MAX_SECS {
            return Err(ClockError::OutOfRange { secs });
        }
        Ok(Self { secs, nanos })
    }

    /// Converts a [`SystemTime`].
    pub fn from_system_time(time: SystemTime) -> Result<Self, ClockError> {
        let since = time
            .duration_since(UNIX_EPOCH)
            .map_err(|_| ClockError::BeforeEpoch)?;
        Self::from_unix(since.as_secs(), since.subsec_nanos())
    }

    /// Whole seconds since the Unix epoch.
    pub fn unix_secs(self) -> u64 {
        self.secs
    }

    /// The nanoseconds within the second.
    pub fn subsec_nanos(self) -> u32 {
        self.nanos
    }

    /// RFC 3339 in UTC, e.g. `2024-02-29T12:00:00Z` or `2024-02-29T12:00:00.5Z`.
    pub fn to_rfc3339(self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (year, month, day) = civil_from_days(self.secs / SECS_PER_DAY);
        let rem = self.secs % SECS_PER_DAY;
        let (hour, minute, second) = (rem / 3600, rem % 3600 / 60, rem % 60);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}"
        )?;
        if self.nanos != 0 {
            let fraction = format!("{:09}", self.nanos);
            write!(f, ".{}", fraction.trim_end_matches('0'))?;
        }
        f.write_str("Z")
    }
}

/// The proleptic Gregorian date `days` days after 1970-01-01.
///
/// Howard Hinnant's `civil_from_days`, restricted to non-negative day counts: the calendar is
/// counted in 400-year eras (146097 days) starting on 0000-03-01, so that the leap day falls at
/// the end of each year of the shifted calendar.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // 719468 days separate 0000-03-01 from 1970-01-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097; // day of era, [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // year of era, [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March 1st, [0, 365]
    let mp = (5 * doy + 2) / 153; // month from March, [0, 11]
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Days from 1970-01-01 to a proleptic Gregorian date, negative before it (Howard Hinnant's
/// `days_from_civil`, the inverse of `civil_from_days` below); HTTP dates and docker ages use it.
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses a `SOURCE_DATE_EPOCH` value: ASCII digits only, no sign, no fraction, no spaces.
pub fn parse_source_date_epoch(value: &str) -> Result<Timestamp, ClockError> {
    let invalid = || ClockError::InvalidSourceDateEpoch {
        value: value.to_owned(),
    };
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let secs: u64 = value.parse().map_err(|_| invalid())?;
    Timestamp::from_unix(secs, 0)
}

/// The pinned time from `SOURCE_DATE_EPOCH`, or `None` when it is unset or empty.
///
/// An empty value counts as unset because CI systems commonly export the variable empty.
pub fn source_date_epoch() -> Result<Option<Timestamp>, ClockError> {
    match std::env::var_os(SOURCE_DATE_EPOCH) {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) => match v.to_str() {
            Some(s) => parse_source_date_epoch(s).map(Some),
            None => Err(ClockError::InvalidSourceDateEpoch {
                value: v.to_string_lossy().into_owned(),
            }),
        },
    }
}

/// The time to record now: `SOURCE_DATE_EPOCH` when set, else the system clock.
pub fn now() -> Result<Timestamp, ClockError> {
    now_with(source_date_epoch()?, SystemTime::now())
}

/// [`now`] with its inputs given: the pinned time wins over the system clock.
pub fn now_with(pinned: Option<Timestamp>, system: SystemTime) -> Result<Timestamp, ClockError> {
    match pinned {
        Some(t) => Ok(t),
        None => Timestamp::from_system_time(system),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_table() {
        // Expected values checked against GNU `date -u -d @<secs> +%Y-%m-%dT%H:%M:%SZ`.
        let cases: &[(u64, u32, &str)] = &[
            (0, 0, "1970-01-01T00:00:00Z"),
            (68_169_600, 0, "1972-02-29T00:00:00Z"),
            (946_684_799, 0, "1999-12-31T23:59:59Z"),
            (951_782_400, 0, "2000-02-29T00:00:00Z"),
            (1_000_000_000, 0, "2001-09-09T01:46:40Z"),
            (1_234_567_890, 0, "2009-02-13T23:31:30Z"),
            (1_709_164_800, 0, "2024-02-29T00:00:00Z"),
            (2_147_483_648, 0, "2038-01-19T03:14:08Z"),
            (4_107_542_399, 0, "2100-02-28T23:59:59Z"),
            (4_107_542_400, 0, "2100-03-01T00:00:00Z"),
            (253_402_300_799, 0, "9999-12-31T23:59:59Z"),
            (0, 500_000_000, "1970-01-01T00:00:00.5Z"),
            (0, 123_456_789, "1970-01-01T00:00:00.123456789Z"),
            (0, 1_000, "1970-01-01T00:00:00.000001Z"),
        ];
        for &(secs, nanos, want) in cases {
            let t = Timestamp::from_unix(secs, nanos).unwrap();
            assert_eq!(t.to_rfc3339(), want, "{secs}.{nanos}");
        }
        assert_eq!(cases.len(), 14);
    }

    /// Inverse of `civil_from_days`, the straightforward way, to cross-check every day.
    fn days_from_civil_naive(year: u64, month: u64, day: u64) -> u64 {
        let leap =
            |y: u64| (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
        let month_len = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
        let mut days = 0;
        for y in 1970..year {
            days += if leap(y) { 366 } else { 365 };
        }
        for m in 1..month {
            days += month_len[(m - 1) as usize] + u64::from(m == 2 && leap(year));
        }
        days + day - 1
    }

    #[test]
    fn every_day_from_1970_to_2500_round_trips() {
        let mut expected = (1970, 1, 1);
        let mut count = 0;
        let end = days_from_civil_naive(2500, 1, 1);
        for days in 0..end {
            let got = civil_from_days(days);
            assert_eq!(got, expected, "day {days}");
            assert_eq!(days_from_civil_naive(got.0, got.1, got.2), days);
            let (y, m, d) = (got.0 as i64, got.1 as i64, got.2 as i64);
            assert_eq!(days_from_civil(y, m, d), days as i64);
            // Advance `expected` by one day by hand.
            let next = civil_from_days(days + 1);
            expected = if next.2 == expected.2 + 1 {
                (expected.0, expected.1, expected.2 + 1)
            } else if next.1 == expected.1 + 1 {
                (expected.0, expected.1 + 1, 1)
            } else {
                (expected.0 + 1, 1, 1)
            };
            count += 1;
        }
        assert_eq!(count, 193_579);
    }

    #[test]
    fn source_date_epoch_parsing() {
        let cases: &[(&str, Option<&str>)] = &[
            ("0", Some("1970-01-01T00:00:00Z")),
            ("1709164800", Some("2024-02-29T00:00:00Z")),
            ("00042", Some("1970-01-01T00:00:42Z")),
            ("253402300799", Some("9999-12-31T23:59:59Z")),
            ("253402300800", None),
            ("18446744073709551616", None),
            ("", None),
            ("-1", None),
            ("+1", None),
            (" 1", None),
            ("1 ", None),
            ("1.5", None),
            ("1e9", None),
            ("0x10", None),
        ];
        for (input, want) in cases {
            let got = parse_source_date_epoch(input).ok().map(|t| t.to_rfc3339());
            assert_eq!(got.as_deref(), *want, "{input:?}");
        }
        assert_eq!(
            parse_source_date_epoch("253402300800"),
            Err(ClockError::OutOfRange {
                secs: 253_402_300_800
            })
        );
        assert_eq!(
            parse_source_date_epoch("x").unwrap_err().to_string(),
            "invalid SOURCE_DATE_EPOCH \"x\": expected a decimal number of seconds"
        );
    }

    #[test]
    fn pinned_time_wins_over_the_system_clock() {
        let system = UNIX_EPOCH + Duration::new(1_000_000_000, 250_000_000);
        let pinned = Timestamp::from_unix(7, 0).unwrap();
        assert_eq!(now_with(Some(pinned), system).unwrap(), pinned);
        assert_eq!(
            now_with(None, system).unwrap().to_rfc3339(),
            "2001-09-09T01:46:40.25Z"
        );
        assert_eq!(
            now_with(None, UNIX_EPOCH - Duration::from_secs(1)),
            Err(ClockError::BeforeEpoch)
        );
        assert_eq!(
            Timestamp::from_unix(0, 1_000_000_000),
            Err(ClockError::InvalidNanos {
                nanos: 1_000_000_000
            })
        );
    }
}
