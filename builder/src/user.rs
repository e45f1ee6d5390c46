//! Users and groups as an image sees them: its own `/etc/passwd` and `/etc/group`, read and
//! parsed once here, and the two ways a build resolves a name against them.
//!
//! kiln never asks the host's NSS (libc, `getpwnam`) and never runs a program from the image to
//! find a user: an image's `nsswitch.conf`, `libnss_*.so` or binaries must not run on the host
//! (CVE-2014-9357, CVE-2019-14271). The files are read by the one hardened reader of image files
//! ([`crate::layer::RootFileError`]): resolved inside the root, regular files only, never opened
//! if they are a FIFO or a device, at most 16 MiB.
//!
//! Parsing follows runc's `user` package, which both BuildKit's executor and its file ops use:
//! `#` comment lines and blank lines are skipped, fields are split on `:`, missing trailing fields
//! are empty. One difference: a line whose id field is not a number is skipped, where runc would
//! read it as 0, i.e. root.
//!
//! The two resolutions, side by side:
//!
//! | | `USER` for RUN and `kiln run` ([`UserDb::exec_user`]) | `COPY --chown`, `ADD --chown`, `WORKDIR` ([`UserDb::chown`]) |
//! |---|---|---|
//! | rules | runc's `GetExecUser` as BuildKit's executor calls it | BuildKit's file op (`readUser`) |
//! | empty | `0:0`, HOME from root's entry | not resolved (root) |
//! | `uid:gid`, both numbers | taken as they are, HOME from the uid's entry | taken as they are |
//! | `name` | its entry's uid and gid, or an error | its entry's uid and gid, or an error |
//! | `uid` alone | its entry's gid, or gid 0 when it has none | gid = uid |
//! | `name:group` | the group by name or number, or an error | the group by name or number, or an error |
//! | `name:` | the entry's gid | gid 0 |
//! | groups | the primary gid, then every group listing the user's name (none with an explicit group) | — |
//!
//! Supplementary groups start with the primary gid, as containerd and BuildKit set them since
//! CVE-2023-25173 (a process must not keep fewer groups than its files were made for): `id` of
//! an `app` user whose own group is 1600 shows `groups=1600(app)`, as under Docker.

use std::path::Path;

use crate::layer::{Root, RootFileError};

/// The largest `/etc/passwd` or `/etc/group` read (a real one is kilobytes).
const MAX_DB_BYTES: u64 = 16 << 20;

/// A line of `/etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    /// The user name.
    pub name: String,
    /// The numeric user id.
    pub uid: u32,
    /// The primary group id.
    pub gid: u32,
    /// The home directory (empty when the line has none).
    pub home: String,
}

/// A line of `/etc/group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    /// The group name.
    pub name: String,
    /// The numeric group id.
    pub gid: u32,
    /// The user names listed as members.
    pub members: Vec<String>,
}

/// A resolved `USER`, as the process will run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    /// The user id.
    pub uid: u32,
    /// The primary group id.
    pub gid: u32,
    /// Supplementary group ids: the primary gid first, then the user's groups in file order.
    pub groups: Vec<u32>,
    /// The home directory (for `HOME` when the environment has none).
    pub home: String,
}

/// A user or group that the image does not have, or a database that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// A user name with no `/etc/passwd` entry (runc's wording).
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoUser(String),
    /// A group name with no `/etc/group` entry.
    #[error("unable to find group {0}: no matching entries in group file")]
    NoGroup(String),
    /// A numeric id outside what Linux accepts.
    #[error("id {0} is out of range")]
    Range(String),
    /// `/etc/passwd` or `/etc/group` of the image cannot be read.
    #[error("reading {path} of the image")]
    File {
        /// The path inside the image.
        path: &'static str,
        /// Why.
        #[source]
        source: RootFileError,
    },
}

impl PartialEq for UserError {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

/// Parses an id as runc does (decimal, within 0..=2^31-1); `None` when it is not a number.
fn parse_id(s: &str) -> Option<Result<u32, UserError>> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(match s.parse::<u32>() {
        Ok(id) if id <= i32::MAX as u32 => Ok(id),
        _ => Err(UserError::Range(s.to_owned())),
    })
}

/// The `:`-separated fields of each line that is not blank or a comment.
fn records(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split(':').collect())
}

/// Parses `/etc/passwd` text; lines without a numeric uid and gid are skipped.
pub fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    records(text)
        .filter_map(|f| {
            Some(PasswdEntry {
                name: (*f.first()?).to_owned(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
                home: f.get(5).copied().unwrap_or("").to_owned(),
            })
        })
        .collect()
}

/// Parses `/etc/group` text; lines without a numeric gid are skipped.
pub fn parse_group(text: &str) -> Vec<GroupEntry> {
    records(text)
        .filter_map(|f| {
            Some(GroupEntry {
                name: (*f.first()?).to_owned(),
                gid: f.get(2)?.parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| m.split(',').filter(|m| !m.is_empty()).map(str::to_owned))
                    .into_iter()
                    .flatten()
                    .collect(),
            })
        })
        .collect()
}

/// The user database of an image root.
#[derive(Debug, Default, Clone)]
pub struct UserDb {
    /// `/etc/passwd` entries; `None` when the file does not exist.
    pub passwd: Option<Vec<PasswdEntry>>,
    /// `/etc/group` entries; `None` when the file does not exist.
    pub group: Option<Vec<GroupEntry>>,
}

impl UserDb {
    /// Reads `/etc/passwd` and `/etc/group` inside `root`.
    pub fn read(root: &Path) -> Result<Self, UserError> {
        let root = Root::open(root).map_err(|e| UserError::File {
            path: "/",
            source: e.into(),
        })?;
        let read = |path: &'static str| {
            root.read_file(Path::new(path.trim_start_matches('/')), MAX_DB_BYTES)
                .map(|bytes| bytes.map(|b| String::from_utf8_lossy(&b).into_owned()))
                .map_err(|source| UserError::File { path, source })
        };
        Ok(Self::parse(
            read("/etc/passwd")?.as_deref(),
            read("/etc/group")?.as_deref(),
        ))
    }

    /// The database of the given file texts (`None`: the file does not exist).
    pub fn parse(passwd: Option<&str>, group: Option<&str>) -> Self {
        Self {
            passwd: passwd.map(parse_passwd),
            group: group.map(parse_group),
        }
    }

    fn users(&self) -> &[PasswdEntry] {
        self.passwd.as_deref().unwrap_or_default()
    }

    fn groups(&self) -> &[GroupEntry] {
        self.group.as_deref().unwrap_or_default()
    }

    /// A group by number or name: a number without an entry is used as it is, a name must exist.
    fn group_id(&self, group: &str) -> Result<u32, UserError> {
        match parse_id(group).transpose()? {
            Some(gid) => Ok(gid),
            None => self
                .groups()
                .iter()
                .find(|e| e.name == group)
                .map(|e| e.gid)
                .ok_or_else(|| UserError::NoGroup(group.to_owned())),
        }
    }

    /// Resolves `USER` (`user`, `uid`, `user:group`, `uid:gid`, or empty) for a process.
    pub fn exec_user(&self, spec: &str) -> Result<ExecUser, UserError> {
        // The default user is BuildKit's `0:0`.
        let spec = if spec.is_empty() { "0:0" } else { spec };
        let (user_arg, group_arg) = spec.split_once(':').unwrap_or((spec, ""));
        let home_of = |uid: u32| {
            self.users()
                .iter()
                .find(|e| e.uid == uid)
                .map_or("", |e| e.home.as_str())
        };
        // BuildKit's fast path: numeric uid:gid skips the files (HOME still comes from passwd).
        if let (Some(uid), Some(gid)) = (parse_id(user_arg), parse_id(group_arg)) {
            let (uid, gid) = (uid?, gid?);
            return Ok(ExecUser {
                uid,
                gid,
                groups: vec![gid],
                home: non_empty_home(home_of(uid)),
            });
        }
        let user_arg = if user_arg.is_empty() { "0" } else { user_arg };
        let numeric_user = parse_id(user_arg).transpose()?;
        let found = self.users().iter().find(|e| match numeric_user {
            Some(uid) => e.uid == uid,
            None => e.name == user_arg,
        });
        let (uid, mut gid, home, name) = match (found, numeric_user) {
            (Some(e), _) => (e.uid, e.gid, e.home.as_str(), Some(e.name.as_str())),
            (None, Some(uid)) => (uid, 0, "", None),
            (None, None) => return Err(UserError::NoUser(user_arg.to_owned())),
        };
        let mut groups = Vec::new();
        if !group_arg.is_empty() {
            gid = self.group_id(group_arg)?;
        } else if let Some(name) = name {
            groups = self
                .groups()
                .iter()
                .filter(|g| g.members.iter().any(|m| m == name))
                .map(|g| g.gid)
                .collect();
        }
        groups.retain(|&g| g != gid);
        groups.insert(0, gid);
        Ok(ExecUser {
            uid,
            gid,
            groups,
            home: non_empty_home(home),
        })
    }

    /// Resolves `user[:group]` as `COPY --chown` does: a numeric user alone gets the same
    /// numeric group; a named user gets its primary group; `user:` (empty group) gets group 0.
    pub fn chown(&self, spec: &str) -> Result<(u32, u32), UserError> {
        let (user, group) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        let (uid, primary) = match parse_id(user).transpose()? {
            Some(uid) => (uid, uid),
            None => {
                let entry = self
                    .users()
                    .iter()
                    .find(|e| e.name == user)
                    .ok_or_else(|| UserError::NoUser(user.into()))?;
                (entry.uid, entry.gid)
            }
        };
        let gid = match group {
            None => primary,
            Some("") => 0,
            Some(g) => self.group_id(g)?,
        };
        Ok((uid, gid))
    }
}

/// Resolves `USER`'s `spec` ([`UserDb::exec_user`]) against the image at `root`. Numeric
/// `uid:gid` needs the files only for HOME, so an unreadable `/etc/passwd` (a FIFO, a device)
/// then gives HOME `/` rather than an error, as BuildKit never reads them for that form.
pub fn exec_user_in_root(root: &Path, spec: &str) -> Result<ExecUser, UserError> {
    match UserDb::read(root) {
        Ok(users) => users.exec_user(spec),
        Err(UserError::File { .. }) if is_numeric_pair(spec) => UserDb::default().exec_user(spec),
        Err(e) => Err(e),
    }
}

/// Whether `spec` is `uid:gid`, both numbers.
fn is_numeric_pair(spec: &str) -> bool {
    spec.split_once(':')
        .is_some_and(|(u, g)| parse_id(u).is_some() && parse_id(g).is_some())
}

/// Resolves `COPY --chown`'s `spec` ([`UserDb::chown`]) against the image at `root`, reading its
/// files only when a name needs them: numeric ids are taken as they are, as BuildKit does, even
/// when the image's `/etc/passwd` is missing or unreadable.
pub fn chown_in_root(root: &Path, spec: &str) -> Result<(u32, u32), UserError> {
    let numeric = spec
        .split(':')
        .all(|part| part.is_empty() || parse_id(part).is_some());
    let users = if numeric {
        UserDb::default()
    } else {
        UserDb::read(root)?
    };
    users.chown(spec)
}

fn non_empty_home(home: &str) -> String {
    if home.is_empty() { "/" } else { home }.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
# a comment
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
broken:x:notanumber:0::/:/bin/sh
short line
alice:x:1000:1000:Alice:/home/alice:/bin/sh
bob:x:1001:100::/home/bob:/bin/sh
nohome:x:1002:1002:::/bin/sh
app:x:1600:1600::/app
alice:x:2000:2000:second alice:/nope:/bin/sh
";

    const GROUP: &str = "\
root:x:0:
users:x:100:alice,bob
alice:x:1000:
wheel:x:10:alice
audio:x:29:bob,carol
staff:x:50:
app:x:1600:app
";

    fn user(uid: u32, gid: u32, groups: &[u32], home: &str) -> Result<ExecUser, UserError> {
        Ok(ExecUser {
            uid,
            gid,
            groups: groups.to_vec(),
            home: home.to_owned(),
        })
    }

    /// USER, passwd text, group text, and the expected resolution.
    type Case = (
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
        Result<ExecUser, UserError>,
    );

    #[test]
    fn exec_user_table() {
        let p = Some(PASSWD);
        let g = Some(GROUP);
        let cases: &[Case] = &[
            ("", p, g, user(0, 0, &[0], "/root")),
            ("root", p, g, user(0, 0, &[0], "/root")),
            ("0", p, g, user(0, 0, &[0], "/root")),
            // First match wins; the primary gid, then membership in file order.
            (
                "alice",
                p,
                g,
                user(1000, 1000, &[1000, 100, 10], "/home/alice"),
            ),
            (
                "1000",
                p,
                g,
                user(1000, 1000, &[1000, 100, 10], "/home/alice"),
            ),
            ("bob", p, g, user(1001, 100, &[100, 29], "/home/bob")),
            // A user listed in its own group has it once.
            ("app", p, g, user(1600, 1600, &[1600], "/app")),
            // An explicit group replaces the primary gid and drops the member groups.
            ("alice:staff", p, g, user(1000, 50, &[50], "/home/alice")),
            ("alice:77", p, g, user(1000, 77, &[77], "/home/alice")),
            ("bob:audio", p, g, user(1001, 29, &[29], "/home/bob")),
            // Numeric uid:gid: the fast path, HOME still from passwd.
            ("1000:1000", p, g, user(1000, 1000, &[1000], "/home/alice")),
            ("4242:4242", p, g, user(4242, 4242, &[4242], "/")),
            // A numeric uid with no entry runs as gid 0, HOME /.
            ("4242", p, g, user(4242, 0, &[0], "/")),
            ("nohome", p, g, user(1002, 1002, &[1002], "/")),
            ("daemon", p, g, user(1, 1, &[1], "/usr/sbin")),
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
            ("", None, None, user(0, 0, &[0], "/")),
            (":staff", p, g, user(0, 50, &[50], "/root")),
            ("1000", None, None, user(1000, 0, &[0], "/")),
            ("1000:1000", None, None, user(1000, 1000, &[1000], "/")),
            ("alice", None, g, Err(UserError::NoUser("alice".into()))),
            // No group file: a named group cannot be found, a numeric one is used.
            (
                "alice:staff",
                p,
                None,
                Err(UserError::NoGroup("staff".into())),
            ),
            ("alice:5", p, None, user(1000, 5, &[5], "/home/alice")),
            ("alice", p, None, user(1000, 1000, &[1000], "/home/alice")),
        ];
        for (spec, passwd, group, want) in cases {
            let db = UserDb::parse(*passwd, *group);
            assert_eq!(
                &db.exec_user(spec),
                want,
                "USER {spec:?} passwd={} group={}",
                passwd.is_some(),
                group.is_some()
            );
        }
    }

    #[test]
    fn chown_table() {
        let db = UserDb::parse(Some(PASSWD), Some(GROUP));
        type Case = (&'static str, Result<(u32, u32), &'static str>);
        let cases: &[Case] = &[
            ("1001", Ok((1001, 1001))),
            ("1001:1001", Ok((1001, 1001))),
            ("alice", Ok((1000, 1000))),
            ("bob:wheel", Ok((1001, 10))),
            ("1001:wheel", Ok((1001, 10))),
            ("bob:", Ok((1001, 0))),
            (
                "nobody",
                Err("unable to find user nobody: no matching entries in passwd file"),
            ),
            (
                "bob:nogroup",
                Err("unable to find group nogroup: no matching entries in group file"),
            ),
            ("99999999999", Err("id 99999999999 is out of range")),
        ];
        for (spec, want) in cases {
            let got = db.chown(spec).map_err(|e| e.to_string());
            assert_eq!(got, want.map_err(str::to_owned), "{spec}");
        }
        let groups = db.group.as_deref().unwrap();
        assert_eq!(groups[4].members, ["bob", "carol"]);
    }

    #[test]
    fn reads_inside_the_root_only_and_refuses_what_is_not_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/passwd"), PASSWD).unwrap();
        let db = UserDb::read(&root).unwrap();
        assert_eq!(db.users().len(), 7);
        assert!(db.group.is_none());
        // An image whose /etc is a link to the host's /etc reads its own (missing) files.
        let evil = dir.path().join("evil");
        std::fs::create_dir_all(&evil).unwrap();
        std::os::unix::fs::symlink("/etc", evil.join("etc")).unwrap();
        let db = UserDb::read(&evil).unwrap();
        assert!(db.passwd.is_none() && db.group.is_none());
        // A link inside the root is followed inside it, as runc and BuildKit do.
        std::fs::create_dir_all(evil.join("usr/share")).unwrap();
        std::fs::write(evil.join("usr/share/passwd"), PASSWD).unwrap();
        std::fs::remove_file(evil.join("etc")).unwrap();
        std::fs::create_dir(evil.join("etc")).unwrap();
        std::os::unix::fs::symlink("../../../usr/share/passwd", evil.join("etc/passwd")).unwrap();
        assert_eq!(UserDb::read(&evil).unwrap().users().len(), 7);
        // A FIFO is refused at once (opening it for reading would block until a writer came),
        // and so is a directory.
        std::fs::remove_file(root.join("etc/passwd")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.join("etc/passwd"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        std::fs::create_dir(root.join("etc/group")).unwrap();
        let err = UserDb::read(&root).unwrap_err();
        assert_eq!(
            crate::error_chain(&err),
            "reading /etc/passwd of the image: is not a regular file"
        );
        std::fs::remove_file(root.join("etc/passwd")).unwrap();
        let err = UserDb::read(&root).unwrap_err();
        assert_eq!(
            crate::error_chain(&err),
            "reading /etc/group of the image: is not a regular file"
        );
    }
}
