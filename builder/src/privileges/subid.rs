//! `/etc/subuid` and `/etc/subgid`: the subordinate id ranges a user may map into a user
//! namespace through `newuidmap`/`newgidmap`.
//!
//! Each line is `owner:start:count`, where the owner is a user name or a numeric uid (shadow's
//! `subid(5)`; `newgidmap` looks groups up by the *user*, as here). Lines that do not parse
//! are skipped, as shadow does; ranges are kept in file order, which is the order they are
//! mapped in.

use std::path::Path;

/// A range of subordinate ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubIdRange {
    /// The first id, on the host.
    pub start: u32,
    /// How many.
    pub count: u32,
}

/// The ranges in `text` (a subuid or subgid file) owned by `name` or `uid`.
pub fn parse_subid(text: &str, name: Option<&str>, uid: u32) -> Vec<SubIdRange> {
    let uid = uid.to_string();
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                return None;
            }
            let mut fields = line.split(':');
            let (owner, start, count) = (fields.next()?, fields.next()?, fields.next()?);
            if fields.next().is_some() || !(Some(owner) == name || owner == uid) {
                return None;
            }
            let range = SubIdRange {
                start: start.parse().ok()?,
                count: count.parse().ok()?,
            };
            (range.count > 0).then_some(range)
        })
        .collect()
}

/// The ranges of `name`/`uid` in the file at `path`; none when it is missing or unreadable.
pub fn subid_ranges(path: &Path, name: Option<&str>, uid: u32) -> Vec<SubIdRange> {
    std::fs::read_to_string(path)
        .map(|text| parse_subid(&text, name, uid))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_by_name_or_uid_in_file_order() {
        let text = "# comment\nalice:100000:65536\n\
            1000:300000:10\nbob:165536:65536\nalice:bad:1\nalice:1:0\nalice:1:2:3\n\
            \n  alice:500000:5  \n";
        let r = |start, count| SubIdRange { start, count };
        assert_eq!(
            parse_subid(text, Some("alice"), 1000),
            vec![r(100000, 65536), r(300000, 10), r(500000, 5)]
        );
        assert_eq!(parse_subid(text, Some("bob"), 1001), vec![r(165536, 65536)]);
        assert_eq!(parse_subid(text, None, 1000), vec![r(300000, 10)]);
        assert_eq!(parse_subid(text, Some("carol"), 1002), vec![]);
    }
}
