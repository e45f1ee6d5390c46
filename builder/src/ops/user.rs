//! Users and groups as an image sees them: its own `/etc/passwd` and `/etc/group`, parsed here.
//!
//! kiln never asks the host's NSS (libc, `getpwnam`) and never runs a program from the image to
//! find a user: both would let an image's files or binaries reach the builder (CVE-2014-9357,
//! CVE-2026-41567). The files are read inside the image root without following a link out of
//! it, and with a size limit.

use std::io::Read as _;
use std::path::Path;

use crate::layer::Root;

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
    /// The home directory.
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

/// A user or group that the image does not have, or a database that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// A user name with no `/etc/passwd` entry (runc's wording).
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoUser(String),
    /// A group name with no `/etc/group` entry.
    #[error("unable to find group {0}: no matching entries in group file")]
    NoGroup(String),
    /// The file exists but could not be read.
    #[error("reading /etc/{file} of the image")]
    Read {
        /// `passwd` or `group`.
        file: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Parses `/etc/passwd` text; malformed lines are skipped, as libc does.
pub fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 7 {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_owned(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f[5].to_owned(),
            })
        })
        .collect()
}

/// Parses `/etc/group` text; malformed lines are skipped.
pub fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            Some(GroupEntry {
                name: f[0].to_owned(),
                gid: f[2].parse().ok()?,
                members: f[3]
                    .split(',')
                    .filter(|m| !m.is_empty())
                    .map(str::to_owned)
                    .collect(),
            })
        })
        .collect()
}

/// The user database of an image root.
#[derive(Debug, Default, Clone)]
pub struct UserDb {
    /// `/etc/passwd` entries (empty when the file is missing).
    pub passwd: Vec<PasswdEntry>,
    /// `/etc/group` entries (empty when the file is missing).
    pub group: Vec<GroupEntry>,
}

impl UserDb {
    /// Reads `/etc/passwd` and `/etc/group` inside `root`; missing files are empty databases.
    pub fn read(root: &Path) -> Result<Self, UserError> {
        Ok(UserDb {
            passwd: parse_passwd(&read_etc(root, "passwd")?),
            group: parse_group(&read_etc(root, "group")?),
        })
    }

    /// Resolves `user[:group]` as `COPY --chown` does: a numeric user alone gets the same
    /// numeric group; a named user gets its primary group; `user:` (empty group) gets group 0.
    pub fn resolve_chown(&self, spec: &str) -> Result<(u32, u32), UserError> {
        let (user, group) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        let (uid, primary) = match user.parse::<u32>() {
            Ok(uid) => (uid, uid),
            Err(_) => {
                let entry = self
                    .passwd
                    .iter()
                    .find(|e| e.name == user)
                    .ok_or_else(|| UserError::NoUser(user.into()))?;
                (entry.uid, entry.gid)
            }
        };
        let gid = match group {
            None => primary,
            Some("") => 0,
            Some(g) => match g.parse::<u32>() {
                Ok(gid) => gid,
                Err(_) => {
                    self.group
                        .iter()
                        .find(|e| e.name == g)
                        .ok_or_else(|| UserError::NoGroup(g.into()))?
                        .gid
                }
            },
        };
        Ok((uid, gid))
    }
}

/// The text of `/etc/<name>` inside `root`, or empty when it is missing. The directory is
/// resolved inside the root, and the file itself is not followed if it is a link.
fn read_etc(root: &Path, name: &'static str) -> Result<String, UserError> {
    let read = |source| UserError::Read { file: name, source };
    let root = Root::open(root).map_err(read)?;
    let etc = match root.dir(&[b"etc".to_vec()]) {
        Ok(Some(etc)) => etc,
        Ok(None) => return Ok(String::new()),
        // `/etc` linking to itself (say, to `/etc`, which is itself inside the root) has no files.
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
            return Ok(String::new());
        }
        Err(e) => return Err(read(e)),
    };
    let fd = match rustix::fs::openat(
        &etc,
        name,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT | rustix::io::Errno::LOOP) => return Ok(String::new()),
        Err(e) => return Err(read(e.into())),
    };
    let mut text = String::new();
    std::fs::File::from(fd)
        .take(MAX_DB_BYTES)
        .read_to_string(&mut text)
        .map_err(read)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n# comment\nbroken line\napp:x:1001:1002::/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\napp:x:1002:\ntestgroup:x:5000:app,other\n";

    #[test]
    fn chown_table() {
        let db = UserDb {
            passwd: parse_passwd(PASSWD),
            group: parse_group(GROUP),
        };
        type Case = (&'static str, Result<(u32, u32), &'static str>);
        let cases: &[Case] = &[
            ("1001", Ok((1001, 1001))),
            ("1001:1001", Ok((1001, 1001))),
            ("app", Ok((1001, 1002))),
            ("app:testgroup", Ok((1001, 5000))),
            ("1001:testgroup", Ok((1001, 5000))),
            ("app:", Ok((1001, 0))),
            (
                "nobody",
                Err("unable to find user nobody: no matching entries in passwd file"),
            ),
            (
                "app:nogroup",
                Err("unable to find group nogroup: no matching entries in group file"),
            ),
        ];
        for (spec, want) in cases {
            let got = db.resolve_chown(spec).map_err(|e| e.to_string());
            assert_eq!(got, want.map_err(str::to_owned), "{spec}");
        }
        assert_eq!(db.group[2].members, ["app", "other"]);
        assert_eq!(db.passwd[1].home, "/home/app");
    }

    #[test]
    fn reads_inside_the_root_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/passwd"), PASSWD).unwrap();
        assert_eq!(UserDb::read(&root).unwrap().passwd.len(), 2);
        // An image whose /etc is a link to the host's /etc reads its own (missing) files.
        let evil = dir.path().join("evil");
        std::fs::create_dir_all(&evil).unwrap();
        std::os::unix::fs::symlink("/etc", evil.join("etc")).unwrap();
        let db = UserDb::read(&evil).unwrap();
        assert!(db.passwd.is_empty() && db.group.is_empty());
    }
}
