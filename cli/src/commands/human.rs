//! Human-readable output as docker prints it: sizes (`4.26MB`), ages (`2 minutes ago`) and tables
//! aligned like Go's `tabwriter` in docker's settings.
//!
//! Every function is pure; the numbers follow docker's `go-units` package exactly, including
//! its quirks (decimal units, three significant digits through Go's `%g`, so `999.7 kB` prints
//! as `1e+03kB`).

/// `go-units`' `HumanSizeWithPrecision(size, 3)`, as `docker images` prints SIZE.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    format!("{}{}", go_g(value, 3), UNITS[unit])
}

/// Go's `fmt.Sprintf("%.*g", precision, x)` for a non-negative finite `x`.
fn go_g(x: f64, precision: usize) -> String {
    if x == 0.0 {
        return "0".to_owned();
    }
    let scientific = format!("{:.*e}", precision - 1, x);
    let (mantissa, exponent) = scientific
        .split_once('e')
        .expect("`{:e}` always writes an exponent");
    let exponent: i32 = exponent.parse().expect("`{:e}` writes a decimal exponent");
    if exponent < -4 || exponent >= precision as i32 {
        let sign = if exponent < 0 { '-' } else { '+' };
        return format!(
            "{}e{sign}{:02}",
            trim_fraction(mantissa),
            exponent.unsigned_abs()
        );
    }
    let decimals = usize::try_from(precision as i32 - 1 - exponent).unwrap_or(0);
    trim_fraction(&format!("{x:.decimals$}")).to_owned()
}

/// Removes trailing zeros of a fraction, and the point if nothing is left after it.
fn trim_fraction(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// `go-units`' `HumanDuration`, as `docker images` prints CREATED (before " ago").
pub fn duration(secs: u64) -> String {
    let minutes = secs / 60;
    // Go rounds the duration to the nearest hour here (halves away from zero).
    let hours = (secs + 1800) / 3600;
    match secs {
        0 => "Less than a second".to_owned(),
        1 => "1 second".to_owned(),
        2..=59 => format!("{secs} seconds"),
        _ if minutes == 1 => "About a minute".to_owned(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".to_owned(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", secs / 3600 / 24 / 365),
    }
}

/// Rows aligned as docker's tables are (`tabwriter.NewWriter(out, 10, 1, 3, ' ', 0)`): each
/// column but the last is as wide as its widest cell plus 3, and at least 10.
pub fn table(rows: &[Vec<String>]) -> String {
    tabwriter(rows, 10, 3)
}

/// Go's `tabwriter` with a minimum cell width and a padding: every column but the last is as
/// wide as its widest cell plus `padding`, and at least `min_width`; trailing spaces are cut.
pub fn tabwriter(rows: &[Vec<String>], min_width: usize, padding: usize) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .map(|w| (w + padding).max(min_width))
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if c + 1 < row.len() {
                let pad = widths[c] - cell.chars().count();
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_go_units() {
        let table: [(u64, &str); 12] = [
            (0, "0B"),
            (1, "1B"),
            (999, "999B"),
            (1000, "1kB"),
            (1024, "1.02kB"),
            (4_261_000, "4.26MB"),
            (4_265_000, "4.26MB"),
            (12_345_678, "12.3MB"),
            (123_456_789, "123MB"),
            (999_700, "1e+03kB"),
            (1_000_000_000, "1GB"),
            (u64::MAX, "18.4EB"),
        ];
        for (bytes, expected) in table {
            assert_eq!(size(bytes), expected, "{bytes}");
        }
    }

    #[test]
    fn durations_match_go_units() {
        let table: [(u64, &str); 16] = [
            (0, "Less than a second"),
            (1, "1 second"),
            (59, "59 seconds"),
            (60, "About a minute"),
            (119, "About a minute"),
            (120, "2 minutes"),
            (3599, "59 minutes"),
            (3600, "About an hour"),
            (5399, "About an hour"),
            (5400, "2 hours"),
            (47 * 3600, "47 hours"),
            (48 * 3600, "2 days"),
            (14 * 86_400, "2 weeks"),
            (60 * 86_400, "2 months"),
            (730 * 86_400, "2 years"),
            (56 * 365 * 86_400 + 86_400 * 14, "56 years"),
        ];
        for (secs, expected) in table {
            assert_eq!(duration(secs), expected, "{secs}");
        }
    }

    #[test]
    fn tables_align_like_tabwriter() {
        let rows = vec![
            vec!["REPOSITORY".into(), "TAG".into(), "SIZE".into()],
            vec!["busybox".into(), "latest".into(), "4.26MB".into()],
            vec!["a".into(), "a-much-longer-tag".into(), "1B".into()],
        ];
        assert_eq!(
            table(&rows),
            "REPOSITORY   TAG                 SIZE\n\
             busybox      latest              4.26MB\n\
             a            a-much-longer-tag   1B\n"
        );
    }
}
