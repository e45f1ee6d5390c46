//! USER resolution: a `user[:group]` string against the rootfs' own `/etc/passwd` and
//! `/etc/group` text, with the semantics of runc's `user.GetExecUser` as BuildKit calls it.
//!
//! Pure: the caller reads the two files (inside the root, size-limited, regular files only) and
//! passes their text, or `None` when a file does not exist. Never the host's NSS: an image's
//! `nsswitch.conf` or `libnss_*.so` must not run on the host (CVE-2019-14271).
//!
//! Rules: empty → `0:0` (root, home `/root` if passwd says so). `uid:gid`, both numeric → taken as
//! is, no supplementary groups (BuildKit's fast path). Otherwise the user is looked up by name, or
//! by uid when numeric; the first matching line wins. A name that matches nothing is an error; a
//! number that matches nothing is used as it is, with gid 0. With an explicit group the primary
//! gid is that group (by name or number; an unknown name is an error) and there are no
//! supplementary groups (`USER u:g` gives *only* g); without one the gid comes from passwd and
//! the supplementary groups are every group listing the user's name. HOME is the passwd entry's
//! home, `/` when there is none. Lines that do not parse are skipped (runc would read a
//! malformed uid as 0, i.e. root).

/// A resolved user, as the process will run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    /// The user id.
    pub uid: u32,
    /// The primary group id.
    pub gid: u32,
    /// Supplementary group ids, in `/etc/group` order.
    pub groups: Vec<u32>,
    /// The home directory (for `HOME` when the environment has none).
    pub home: String,
}

/// Why a USER could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    /// A user name with no `/etc/passwd` entry.
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoUser(String),
    /// A group name with no `/etc/group` entry.
    #[error("unable to find group {0}: no matching entries in group file")]
    NoGroup(String),
    /// A numeric id outside what Linux accepts.
    #[error("id {0} is out of range")]
    Range(String),
}

/// One `/etc/passwd` line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Passwd<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

/// One `/etc/group` line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Group<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

/// Parses an id as runc does (decimal, within 0..=2^31-1).
fn parse_id(s: &str) -> Option<Result<u32, UserError>> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(match s.parse::<u32>() {
        Ok(id) if id <= i32::MAX as u32 => Ok(id),
        _ => Err(UserError::Range(s.to_owned())),
    })
}

fn passwd_entries(text: &str) -> impl Iterator<Item = Passwd<'_>> {
    text.lines().filter_map(|line| {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let f: Vec<&str> = line.split(':').collect();
        Some(Passwd {
            name: f.first()?,
            uid: f.get(2)?.parse().ok()?,
            gid: f.get(3)?.parse().ok()?,
            home: f.get(5).copied().unwrap_or(""),
        })
    })
}

fn group_entries(text: &str) -> impl Iterator<Item = Group<'_>> {
    text.lines().filter_map(|line| {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let f: Vec<&str> = line.split(':').collect();
        Some(Group {
            name: f.first()?,
            gid: f.get(2)?.parse().ok()?,
            members: f
                .get(3)
                .map(|m| m.split(',').filter(|m| !m.is_empty()).collect())
                .unwrap_or_default(),
        })
    })
}

/// Resolves `spec` (`user`, `uid`, `user:group`, `uid:gid`, or empty) against the rootfs'
/// passwd and group text.
pub fn resolve_user(
    spec: &str,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<ExecUser, UserError> {
    // The default user is BuildKit's `0:0`: root, without supplementary groups.
    let spec = if spec.is_empty() { "0:0" } else { spec };
    let (user_arg, group_arg) = match spec.split_once(':') {
        Some((u, g)) => (u, g),
        None => (spec, ""),
    };
    // BuildKit's fast path: numeric uid:gid skips the files (HOME still comes from passwd).
    if let (Some(uid), Some(gid)) = (parse_id(user_arg), parse_id(group_arg)) {
        let uid = uid?;
        let gid = gid?;
        let home = passwd
            .and_then(|p| passwd_entries(p).find(|e| e.uid == uid))
            .map_or("/", |e| e.home);
        return Ok(ExecUser {
            uid,
            gid,
            groups: Vec::new(),
            home: non_empty_home(home),
        });
    }
    let user_arg = if user_arg.is_empty() { "0" } else { user_arg };
    let numeric_user = parse_id(user_arg).transpose()?;
    let found = passwd.and_then(|p| {
        passwd_entries(p).find(|e| match numeric_user {
            Some(uid) => e.uid == uid,
            None => e.name == user_arg,
        })
    });
    let mut user = ExecUser {
        uid: 0,
        gid: 0,
        groups: Vec::new(),
        home: "/".to_owned(),
    };
    let matched_name = match (&found, numeric_user) {
        (Some(e), _) => {
            user.uid = e.uid;
            user.gid = e.gid;
            user.home = non_empty_home(e.home);
            Some(e.name)
        }
        (None, Some(uid)) => {
            user.uid = uid;
            None
        }
        (None, None) => return Err(UserError::NoUser(user_arg.to_owned())),
    };
    if !group_arg.is_empty() {
        let numeric_group = parse_id(group_arg).transpose()?;
        let found = group.and_then(|g| {
            group_entries(g).find(|e| match numeric_group {
                Some(gid) => e.gid == gid,
                None => e.name == group_arg,
            })
        });
        user.gid = match (found, numeric_group) {
            (Some(e), _) => e.gid,
            (None, Some(gid)) => gid,
            (None, None) => return Err(UserError::NoGroup(group_arg.to_owned())),
        };
    } else if let (Some(name), Some(text)) = (matched_name, group) {
        user.groups = group_entries(text)
            .filter(|g| g.members.contains(&name))
            .map(|g| g.gid)
            .collect();
    }
    Ok(user)
}

fn non_empty_home(home: &str) -> String {
    if home.is_empty() {
        "/".to_owned()
    } else {
        home.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
# a comment
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
broken:x:notanumber:0::/:/bin/sh
alice:x:1000:1000:Alice:/home/alice:/bin/sh
bob:x:1001:100::/home/bob:/bin/sh
nohome:x:1002:1002:::/bin/sh
alice:x:2000:2000:second alice:/nope:/bin/sh
";

    const GROUP: &str = "\
root:x:0:
users:x:100:alice,bob
alice:x:1000:
wheel:x:10:alice
audio:x:29:bob,carol
staff:x:50:
";

    /// USER, passwd text, group text, and the expected resolution.
    type Case = (
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
        Result<ExecUser, UserError>,
    );

    fn user(uid: u32, gid: u32, groups: &[u32], home: &str) -> Result<ExecUser, UserError> {
        Ok(ExecUser {
            uid,
            gid,
            groups: groups.to_vec(),
            home: home.to_owned(),
        })
    }

    #[test]
    fn resolution_table() {
        let p = Some(PASSWD);
        let g = Some(GROUP);
        let cases: &[Case] = &[
            ("", p, g, user(0, 0, &[], "/root")),
            ("root", p, g, user(0, 0, &[], "/root")),
            ("0", p, g, user(0, 0, &[], "/root")),
            // First match wins; supplementary groups from membership, in file order.
            ("alice", p, g, user(1000, 1000, &[100, 10], "/home/alice")),
            ("1000", p, g, user(1000, 1000, &[100, 10], "/home/alice")),
            ("bob", p, g, user(1001, 100, &[100, 29], "/home/bob")),
            // An explicit group replaces the primary gid and drops supplementary groups.
            ("alice:staff", p, g, user(1000, 50, &[], "/home/alice")),
            ("alice:77", p, g, user(1000, 77, &[], "/home/alice")),
            ("bob:audio", p, g, user(1001, 29, &[], "/home/bob")),
            // Numeric uid:gid: the fast path, HOME still from passwd.
            ("1000:1000", p, g, user(1000, 1000, &[], "/home/alice")),
            ("4242:4242", p, g, user(4242, 4242, &[], "/")),
            // A numeric uid with no entry runs as gid 0, HOME /.
            ("4242", p, g, user(4242, 0, &[], "/")),
            ("nohome", p, g, user(1002, 1002, &[], "/")),
            ("daemon", p, g, user(1, 1, &[], "/usr/sbin")),
            // The malformed line is skipped, not read as uid 0.
            ("broken", p, g, Err(UserError::NoUser("broken".into()))),
            ("carol", p, g, Err(UserError::NoUser("carol".into()))),
            (
                "alice:nogroup",
                p,
                g,
                Err(UserError::NoGroup("nogroup".into())),
            ),
            (
                "99999999999",
                p,
                g,
                Err(UserError::Range("99999999999".into())),
            ),
            (
                "1:4294967295",
                p,
                g,
                Err(UserError::Range("4294967295".into())),
            ),
            // No passwd file: numbers work, names do not.
            ("", None, None, user(0, 0, &[], "/")),
            (":staff", p, g, user(0, 50, &[], "/root")),
            ("1000", None, None, user(1000, 0, &[], "/")),
            ("1000:1000", None, None, user(1000, 1000, &[], "/")),
            ("alice", None, g, Err(UserError::NoUser("alice".into()))),
            // No group file: a named group cannot be found, a numeric one is used.
            (
                "alice:staff",
                p,
                None,
                Err(UserError::NoGroup("staff".into())),
            ),
            ("alice:5", p, None, user(1000, 5, &[], "/home/alice")),
            ("alice", p, None, user(1000, 1000, &[], "/home/alice")),
        ];
        for (spec, passwd, group, want) in cases {
            assert_eq!(
                &resolve_user(spec, *passwd, *group),
                want,
                "USER {spec:?} passwd={} group={}",
                passwd.is_some(),
                group.is_some()
            );
        }
        assert_eq!(cases.len(), 27);
    }
}
