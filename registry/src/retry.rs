//! When to retry a request and how long to wait: pure policy, no I/O.
//!
//! The conventions are go-containerregistry's (reliability.md §2.6): retry 408, 429, 499, 500,
//! 502, 503, 504 and 522, and connection failures; never any other 4xx (401 is handled by
//! re-authenticating once, elsewhere). The wait grows ×3 from one second with ±10 % jitter,
//! three tries in all; a `Retry-After` (seconds or an HTTP date, [`crate::http_date`]) replaces the computed wait,
//! capped so that a registry cannot park kiln for an hour.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;

use crate::http_date::parse_http_date;

/// How often and how patiently requests are retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all, the first included (at least 1).
    pub attempts: u32,
    /// The wait after the first failure.
    pub base: Duration,
    /// How much longer each following wait is.
    pub factor: u32,
    /// The longest wait, whatever `Retry-After` says.
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 3,
            base: Duration::from_secs(1),
            factor: 3,
            max_wait: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt number `attempt` (1-based), with jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(16);
        let plain = self
            .base
            .saturating_mul(self.factor.saturating_pow(exponent))
            .min(self.max_wait);
        // ±10 %: enough to keep parallel transfers from retrying in lockstep. The clock's
        // nanoseconds are random enough for that and need no RNG.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let jitter = f64::from(nanos % 2001) / 10_000.0 - 0.1;
        plain.mul_f64(1.0 + jitter)
    }

    /// The wait before retrying a response: its `Retry-After` if it has a usable one, else
    /// [`delay`](Self::delay); never more than `max_wait`.
    pub fn wait_for(&self, attempt: u32, retry_after: Option<&str>, now: SystemTime) -> Duration {
        retry_after
            .and_then(|v| parse_retry_after(v, now))
            .unwrap_or_else(|| self.delay(attempt))
            .min(self.max_wait)
    }
}

/// Whether a status means "try again later".
pub fn is_retryable_status(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        408 | 429 | 499 | 500 | 502 | 503 | 504 | 522
    )
}

/// Reads `Retry-After`: delay-seconds or an HTTP date (RFC 9110 §10.2.3), in any of the three
/// formats [`parse_http_date`] reads. A date in the past is no wait; anything else unreadable is
/// `None`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    // A date before 1970 is in the past too.
    let secs = u64::try_from(parse_http_date(value)?).unwrap_or(0);
    let at = UNIX_EPOCH + Duration::from_secs(secs);
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_statuses() {
        let retry = [408, 429, 499, 500, 502, 503, 504, 522];
        for code in 100..600u16 {
            let status = StatusCode::from_u16(code).unwrap();
            assert_eq!(is_retryable_status(status), retry.contains(&code), "{code}");
        }
    }

    #[test]
    fn retry_after_table() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        let cases: &[(&str, Option<u64>)] = &[
            ("2", Some(2)),
            (" 120 ", Some(120)),
            ("0", Some(0)),
            ("Sun, 06 Nov 1994 08:49:47 GMT", Some(10)),
            ("Sun, 06 Nov 1994 08:49:00 GMT", Some(0)),
            ("Mon, 07 Nov 1994 08:49:37 GMT", Some(86_400)),
            ("Thu, 01 Jan 1970 00:00:00 GMT", Some(0)),
            ("Thu, 31 Dec 1969 23:59:59 GMT", Some(0)),
            ("Sunday, 06-Nov-94 08:49:47 GMT", Some(10)),
            ("Sun, 06 Nov 1994 08:49:47 UTC", None),
            ("Sun, 32 Nov 1994 08:49:47 GMT", None),
            ("-1", None),
            ("soon", None),
            ("", None),
        ];
        for (value, secs) in cases {
            assert_eq!(
                parse_retry_after(value, now),
                secs.map(Duration::from_secs),
                "{value}"
            );
        }
    }

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        let policy = RetryPolicy::default();
        for (attempt, plain) in [(1, 1.0), (2, 3.0), (3, 9.0), (5, 60.0), (40, 60.0)] {
            let d = policy.delay(attempt).as_secs_f64();
            assert!(
                d >= plain * 0.899 && d <= plain * 1.101,
                "attempt {attempt}: {d}"
            );
        }
        let now = SystemTime::now();
        assert_eq!(policy.wait_for(1, Some("2"), now), Duration::from_secs(2));
        assert_eq!(
            policy.wait_for(1, Some("3600"), now),
            Duration::from_secs(60)
        );
        assert!(policy.wait_for(1, Some("junk"), now) < Duration::from_secs(2));
    }
}
