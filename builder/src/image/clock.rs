//! The one clock kiln reads, and RFC 3339 written and read (through the `time` crate).
//!
//! Every timestamp kiln records (config `created`, history `created`) comes from [`now`], which
//! honours `SOURCE_DATE_EPOCH` (reproducible-builds.org: a decimal count of seconds since the Unix
//! epoch; a malformed value is an error, not a silent fallback to the wall clock). Formatting is
//! UTC with a `Z` suffix, as Go's `time.RFC3339Nano` prints it: whole seconds have no fraction and
//! a fraction has its trailing zeros trimmed. Years past 9999 cannot be written in RFC 3339, so a
//! [`Timestamp`] never holds one. [`parse_rfc3339`] reads back the times images carry.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcDateTime};

/// The environment variable that pins every timestamp kiln writes.
pub const SOURCE_DATE_EPOCH: &str = "SOURCE_DATE_EPOCH";

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
        // A Timestamp is within 1970..=9999 by construction, where neither step can fail.
        let nanos = i128::from(self.secs) * 1_000_000_000 + i128::from(self.nanos);
        let time = UtcDateTime::from_unix_timestamp_nanos(nanos).map_err(|_| fmt::Error)?;
        f.write_str(&time.format(&Rfc3339).map_err(|_| fmt::Error)?)
    }
}

/// Seconds since the Unix epoch of an RFC 3339 timestamp (`2024-02-29T12:00:00.5+01:00`), or
/// `None` if it is not one. Fractions are dropped; negative before 1970.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    OffsetDateTime::parse(s, &Rfc3339)
        .ok()
        .map(OffsetDateTime::unix_timestamp)
}

/// Whether RFC 3339 time `a` is later than `b`, by the instants they name (text order fails
/// on fractions: `…00.5Z` sorts before `…00Z`). Text that does not parse compares as text.
pub fn is_later(a: &str, b: &str) -> bool {
    let nanos = |s: &str| {
        OffsetDateTime::parse(s, &Rfc3339)
            .ok()
            .map(OffsetDateTime::unix_timestamp_nanos)
    };
    match (nanos(a), nanos(b)) {
        (Some(a), Some(b)) => a > b,
        _ => a > b,
    }
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

    #[test]
    fn every_day_from_1970_to_2500_round_trips() {
        let leap =
            |y: u64| (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
        let month_len = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
        // The date of day `days`, advanced by hand one day at a time.
        let (mut y, mut m, mut d) = (1970, 1, 1);
        let mut days = 0;
        while y < 2500 {
            let secs = days * 86_400;
            let text = Timestamp::from_unix(secs, 0).unwrap().to_rfc3339();
            assert_eq!(
                text,
                format!("{y:04}-{m:02}-{d:02}T00:00:00Z"),
                "day {days}"
            );
            assert_eq!(parse_rfc3339(&text), Some(secs as i64), "{text}");
            days += 1;
            d += 1;
            if d > month_len[m as usize - 1] + u64::from(m == 2 && leap(y)) {
                (m, d) = (m + 1, 1);
            }
            if m > 12 {
                (y, m) = (y + 1, 1);
            }
        }
        assert_eq!(days, 193_579);
    }

    #[test]
    fn rfc3339_parsing() {
        let table: [(&str, Option<i64>); 14] = [
            ("1970-01-01T00:00:00Z", Some(0)),
            ("2024-02-29T12:00:00Z", Some(1_709_208_000)),
            ("2024-02-29T12:00:00.123456789Z", Some(1_709_208_000)),
            ("2024-02-29T13:30:00+01:30", Some(1_709_208_000)),
            ("2024-02-29T10:00:00-02:00", Some(1_709_208_000)),
            ("2024-02-29t12:00:00z", Some(1_709_208_000)),
            ("2024-02-29 12:00:00Z", Some(1_709_208_000)),
            ("1969-12-31T23:59:59Z", Some(-1)),
            ("2024-02-29", None),
            ("2024-13-01T00:00:00Z", None),
            ("2023-02-29T00:00:00Z", None),
            ("2024-02-29T12:00:00", None),
            ("2024-02-29T12:00:00.Z", None),
            ("2024-02-29T12:00:00+24:00", None),
        ];
        for (s, expected) in table {
            assert_eq!(parse_rfc3339(s), expected, "{s}");
        }
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

    #[test]
    fn later_compares_instants_not_text() {
        let cases = [
            ("2024-01-01T00:00:00.5Z", "2024-01-01T00:00:00Z", true),
            ("2024-01-01T00:00:00Z", "2024-01-01T00:00:00.5Z", false),
            ("2024-01-01T01:00:00+02:00", "2024-01-01T00:00:00Z", false),
            ("2024-01-01T00:00:00Z", "2024-01-01T00:00:00Z", false),
        ];
        for (a, b, want) in cases {
            assert_eq!(is_later(a, b), want, "{a} > {b}");
        }
    }
}
