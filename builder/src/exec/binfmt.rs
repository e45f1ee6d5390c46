//! Whether RUN can run a platform's binaries here: natively (the host's own, and the 32-bit
//! x86 binaries an amd64 kernel runs), or under QEMU user emulation registered with the
//! kernel's `binfmt_misc`.
//!
//! The sandbox execs the command as it would natively; for a foreign ELF the kernel finds a
//! `binfmt_misc` handler by magic bytes and starts its interpreter instead. The interpreter's
//! path would have to exist inside the build's root filesystem, unless the handler was
//! registered with the `F` (fix binary) flag: then the kernel opened it at registration and
//! uses that file whatever the mount namespace, which is what kiln relies on (Debian's
//! `qemu-user-static` registers its handlers so). A handler counts when it is enabled, has
//! `F`, and its magic and mask accept the ELF header of the platform's binaries (class,
//! byte order and `e_machine`, as executables and as position-independent ones).
//!
//! [`check`] reads `/proc/sys/fs/binfmt_misc`: one file per handler, `status` for the
//! whole. Parsing an entry ([`Entry::parse`]) and matching it ([`Entry::runs`]) are pure.

use std::path::{Path, PathBuf};

use crate::plan::Platform;

/// Where the kernel shows its `binfmt_misc` handlers.
pub const BINFMT_DIR: &str = "/proc/sys/fs/binfmt_misc";

/// How this machine runs a platform's binaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Runner {
    /// The CPU runs them.
    Native,
    /// A `binfmt_misc` handler does (QEMU user emulation).
    Emulated {
        /// The handler's name (`qemu-aarch64`).
        handler: String,
        /// Its interpreter, as registered.
        interpreter: PathBuf,
    },
}

/// Why a platform's binaries cannot run here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmulationError {
    /// No enabled handler accepts the platform's binaries.
    #[error(
        "cannot RUN for {platform} on a {host} host: no QEMU emulator for {platform} is \
         registered in binfmt_misc ({dir}){found}; install one: {install}"
    )]
    NoHandler {
        /// The platform.
        platform: String,
        /// The host's platform.
        host: String,
        /// The directory read.
        dir: String,
        /// What was found instead (a disabled handler, binfmt_misc not mounted), with a leading
        /// `: `, or nothing.
        found: String,
        /// The commands that install and enable one.
        install: String,
    },
    /// A handler accepts them but was registered without the `F` flag, so its interpreter
    /// would be looked up inside the build's root filesystem.
    #[error(
        "cannot RUN for {platform} on a {host} host: the binfmt_misc handler {handler} is \
         registered without the F (fix binary) flag, so its interpreter {interpreter} would \
         have to exist inside the image; register it with F: {install}"
    )]
    NotFixBinary {
        /// The platform.
        platform: String,
        /// The host's platform.
        host: String,
        /// The handler.
        handler: String,
        /// Its interpreter.
        interpreter: String,
        /// The commands that install and enable one with F.
        install: String,
    },
    /// kiln does not know what the platform's binaries look like.
    #[error(
        "cannot RUN for {platform} on a {host} host: kiln cannot tell whether a QEMU emulator \
         runs its binaries (it knows the ELF machines of amd64, 386, arm64, arm, ppc64le, \
         ppc64, s390x, riscv64, mips64le, mips64, mipsle, mips and loong64)"
    )]
    UnknownArchitecture {
        /// The platform.
        platform: String,
        /// The host's platform.
        host: String,
    },
}

/// Whether `platform`'s binaries run on this host: natively, or through a `binfmt_misc`
/// handler with the `F` flag (see the module doc).
pub fn check(platform: &Platform) -> Result<Runner, EmulationError> {
    check_in(platform, &Platform::host(), Path::new(BINFMT_DIR))
}

/// [`check`] for a given host, reading the handlers in `dir`.
pub fn check_in(
    platform: &Platform,
    host: &Platform,
    dir: &Path,
) -> Result<Runner, EmulationError> {
    if runs_natively(platform, host) {
        return Ok(Runner::Native);
    }
    let Some(elf) = Elf::of(platform) else {
        return Err(EmulationError::UnknownArchitecture {
            platform: platform.to_string(),
            host: host.to_string(),
        });
    };
    let install = install_hint(platform);
    let no_handler = |found: String| EmulationError::NoHandler {
        platform: platform.to_string(),
        host: host.to_string(),
        dir: dir.display().to_string(),
        found,
        install: install.clone(),
    };
    let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
    if status.trim() != "enabled" {
        let found = if status.is_empty() {
            format!(
                ": binfmt_misc is not mounted (mount -t binfmt_misc binfmt_misc {})",
                dir.display()
            )
        } else {
            ": binfmt_misc is disabled".to_owned()
        };
        return Err(no_handler(found));
    }
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n != "status" && n != "register")
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let headers = elf.headers();
    let mut disabled = Vec::new();
    let mut without_fix = None;
    for name in names {
        let Ok(text) = std::fs::read_to_string(dir.join(&name)) else {
            continue;
        };
        let Some(entry) = Entry::parse(&text) else {
            continue;
        };
        if !headers.iter().any(|h| entry.accepts(h)) {
            continue;
        }
        match (entry.enabled, entry.fix_binary()) {
            (true, true) => {
                return Ok(Runner::Emulated {
                    handler: name,
                    interpreter: entry.interpreter,
                });
            }
            (true, false) => without_fix = without_fix.or(Some((name, entry.interpreter))),
            (false, _) => disabled.push(name),
        }
    }
    if let Some((handler, interpreter)) = without_fix {
        return Err(EmulationError::NotFixBinary {
            platform: platform.to_string(),
            host: host.to_string(),
            handler,
            interpreter: interpreter.display().to_string(),
            install,
        });
    }
    let found = match disabled.as_slice() {
        [] => String::new(),
        names => format!(": {} is registered but disabled", names.join(", ")),
    };
    Err(no_handler(found))
}

/// Whether a `host` CPU runs `platform`'s binaries itself: its own, and an amd64 kernel's
/// 32-bit x86 ones (variants aside: an `amd64/v3` image is taken to run on any amd64 host).
fn runs_natively(platform: &Platform, host: &Platform) -> bool {
    platform.os == host.os
        && (platform.architecture == host.architecture
            || (host.architecture == "amd64" && platform.architecture == "386"))
}

/// The commands that install QEMU's handlers on Debian and Ubuntu and enable the one for
/// `platform`.
fn install_hint(platform: &Platform) -> String {
    let enable = qemu_name(&platform.architecture)
        .map(|q| format!(" && update-binfmts --enable qemu-{q}"))
        .unwrap_or_default();
    format!("apt-get install qemu-user-static binfmt-support{enable}")
}

/// QEMU's name for an architecture (its `qemu-<name>` binary and handler).
fn qemu_name(architecture: &str) -> Option<&'static str> {
    Some(match architecture {
        "amd64" => "x86_64",
        "386" => "i386",
        "arm64" => "aarch64",
        "arm" => "arm",
        "ppc64le" => "ppc64le",
        "ppc64" => "ppc64",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "mips64le" => "mips64el",
        "mips64" => "mips64",
        "mipsle" => "mipsel",
        "mips" => "mips",
        "loong64" => "loongarch64",
        _ => return None,
    })
}

/// What identifies a platform's ELF binaries: class, byte order, machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Elf {
    /// `ELFCLASS64`.
    wide: bool,
    /// `ELFDATA2MSB`.
    big_endian: bool,
    /// `e_machine`.
    machine: u16,
}

impl Elf {
    fn of(platform: &Platform) -> Option<Self> {
        let (wide, big_endian, machine) = match platform.architecture.as_str() {
            "amd64" => (true, false, 62),
            "386" => (false, false, 3),
            "arm64" => (true, false, 183),
            "arm" => (false, false, 40),
            "ppc64le" => (true, false, 21),
            "ppc64" => (true, true, 21),
            "s390x" => (true, true, 22),
            "riscv64" => (true, false, 243),
            "mips64le" => (true, false, 8),
            "mips64" => (true, true, 8),
            "mipsle" => (false, false, 8),
            "mips" => (false, true, 8),
            "loong64" => (true, false, 258),
            _ => return None,
        };
        Some(Self {
            wide,
            big_endian,
            machine,
        })
    }

    /// The first 20 bytes of an executable (`ET_EXEC`) and of a position-independent one
    /// (`ET_DYN`) for this machine: what a handler's magic is matched against.
    fn headers(self) -> [[u8; 20]; 2] {
        [2u16, 3].map(|e_type| {
            let mut h = [0u8; 20];
            h[..4].copy_from_slice(b"\x7fELF");
            h[4] = if self.wide { 2 } else { 1 };
            h[5] = if self.big_endian { 2 } else { 1 };
            h[6] = 1; // EV_CURRENT
            let (t, m) = if self.big_endian {
                (e_type.to_be_bytes(), self.machine.to_be_bytes())
            } else {
                (e_type.to_le_bytes(), self.machine.to_le_bytes())
            };
            h[16..18].copy_from_slice(&t);
            h[18..20].copy_from_slice(&m);
            h
        })
    }
}

/// One `binfmt_misc` handler as `/proc/sys/fs/binfmt_misc/<name>` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `enabled` (else `disabled`).
    pub enabled: bool,
    /// The interpreter's path.
    pub interpreter: PathBuf,
    /// The flags: `P`, `O`, `C`, `F`.
    pub flags: String,
    /// Where the magic starts in the file.
    pub offset: usize,
    /// The magic bytes; empty for an extension handler.
    pub magic: Vec<u8>,
    /// The mask (all ones when the entry shows none).
    pub mask: Vec<u8>,
}

impl Entry {
    /// Parses an entry's text (the kernel's format: `enabled`, `interpreter PATH`, `flags:
    /// FLAGS`, `offset N`, `magic HEX`, `mask HEX`, one per line). `None` for what is not one.
    pub fn parse(text: &str) -> Option<Self> {
        let mut lines = text.lines();
        let enabled = match lines.next()?.trim() {
            "enabled" => true,
            "disabled" => false,
            _ => return None,
        };
        let mut entry = Entry {
            enabled,
            interpreter: PathBuf::new(),
            flags: String::new(),
            offset: 0,
            magic: Vec::new(),
            mask: Vec::new(),
        };
        for line in lines {
            let (key, value) = line.split_once([' ', ':']).unwrap_or((line, ""));
            let value = value.trim_start_matches(':').trim();
            match key {
                "interpreter" => entry.interpreter = PathBuf::from(value),
                "flags" => entry.flags = value.to_owned(),
                "offset" => entry.offset = value.parse().ok()?,
                "magic" => entry.magic = hex(value)?,
                "mask" => entry.mask = hex(value)?,
                _ => {}
            }
        }
        if entry.mask.is_empty() {
            entry.mask = vec![0xff; entry.magic.len()];
        }
        (entry.mask.len() == entry.magic.len()).then_some(entry)
    }

    /// Whether the kernel opened the interpreter at registration (`F`).
    pub fn fix_binary(&self) -> bool {
        self.flags.contains('F')
    }

    /// Whether a file starting with `header` matches the handler's magic under its mask.
    pub fn accepts(&self, header: &[u8]) -> bool {
        if self.magic.is_empty() {
            return false;
        }
        let Some(window) = header.get(self.offset..self.offset + self.magic.len()) else {
            return false;
        };
        window
            .iter()
            .zip(&self.magic)
            .zip(&self.mask)
            .all(|((b, m), k)| b & k == m & k)
    }
}

/// Bytes from hex digits; `None` for anything else.
fn hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const AARCH64: &str = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\n\
        flags: PF\noffset 0\nmagic 7f454c460201010000000000000000000200b700\n\
        mask ffffffffffffff00fffffffffffffffffeffffff\n";
    const ARM: &str = "enabled\ninterpreter /usr/libexec/qemu-binfmt/arm-binfmt-P\nflags: PF\n\
        offset 0\nmagic 7f454c4601010100000000000000000002002800\n\
        mask ffffffffffffff00fffffffffffffffffeffffff\n";
    const S390X: &str = "enabled\ninterpreter /usr/libexec/qemu-binfmt/s390x-binfmt-P\n\
        flags: PF\noffset 0\nmagic 7f454c4602020100000000000000000000020016\n\
        mask fffffffffffffffcfffffffffffffffffffeffff\n";
    const RISCV64: &str = "enabled\ninterpreter /usr/libexec/qemu-binfmt/riscv64-binfmt-P\n\
        flags: PF\noffset 0\nmagic 7f454c460201010000000000000000000200f300\n\
        mask ffffffffffffff00fffffffffffffffffeffffff\n";
    const JAR: &str = "enabled\ninterpreter /usr/bin/jexec\nflags: \noffset 0\nmagic 504b0304\n";

    fn p(s: &str) -> Platform {
        s.parse().unwrap()
    }

    /// A binfmt_misc directory holding `entries` (name, text).
    fn dir(entries: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("status"), "enabled\n").unwrap();
        std::fs::write(dir.path().join("register"), "").unwrap();
        for (name, text) in entries {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    #[test]
    fn entries_parse_as_the_kernel_shows_them() {
        let e = Entry::parse(AARCH64).unwrap();
        assert!(e.enabled && e.fix_binary());
        assert_eq!(
            e.interpreter,
            Path::new("/usr/libexec/qemu-binfmt/aarch64-binfmt-P")
        );
        assert_eq!((e.offset, e.magic.len(), e.mask.len()), (0, 20, 20));
        let jar = Entry::parse(JAR).unwrap();
        assert_eq!((jar.flags.as_str(), jar.mask.len()), ("", 4));
        assert!(!jar.fix_binary());
        assert!(Entry::parse("").is_none());
        assert!(Entry::parse("enabled\nmagic 7f4\n").is_none());
        assert!(Entry::parse("hello\n").is_none());
    }

    #[test]
    fn handlers_accept_their_platforms_binaries_only() {
        let table: &[(&str, &str, bool)] = &[
            (AARCH64, "linux/arm64", true),
            (AARCH64, "linux/arm", false),
            (AARCH64, "linux/riscv64", false),
            (ARM, "linux/arm/v7", true),
            (ARM, "linux/arm/v6", true),
            (ARM, "linux/arm64", false),
            (S390X, "linux/s390x", true),
            (S390X, "linux/ppc64", false),
            (RISCV64, "linux/riscv64", true),
            (JAR, "linux/arm64", false),
        ];
        for (entry, platform, accepts) in table {
            let entry = Entry::parse(entry).unwrap();
            let elf = Elf::of(&p(platform)).unwrap();
            assert_eq!(
                elf.headers().iter().any(|h| entry.accepts(h)),
                *accepts,
                "{platform} with {:?}",
                entry.interpreter
            );
        }
    }

    #[test]
    fn what_runs_where() {
        let amd64 = p("linux/amd64");
        let d = dir(&[("qemu-aarch64", AARCH64), ("jar", JAR)]);
        let check = |platform: &str| check_in(&p(platform), &amd64, d.path());
        assert_eq!(check("linux/amd64"), Ok(Runner::Native));
        assert_eq!(check("linux/amd64/v3"), Ok(Runner::Native));
        assert_eq!(check("linux/386"), Ok(Runner::Native));
        assert_eq!(
            check("linux/arm64"),
            Ok(Runner::Emulated {
                handler: "qemu-aarch64".into(),
                interpreter: "/usr/libexec/qemu-binfmt/aarch64-binfmt-P".into()
            })
        );
        let err = check("linux/s390x").unwrap_err().to_string();
        assert!(
            err.starts_with(
                "cannot RUN for linux/s390x on a linux/amd64 host: no QEMU emulator for \
                 linux/s390x is registered in binfmt_misc ("
            ),
            "{err}"
        );
        assert!(
            err.ends_with(
                "; install one: apt-get install qemu-user-static binfmt-support && \
                 update-binfmts --enable qemu-s390x"
            ),
            "{err}"
        );
        assert!(matches!(
            check("linux/sparc64"),
            Err(EmulationError::UnknownArchitecture { .. })
        ));
        // On an arm64 host, arm64 is native and amd64 is not.
        let arm64 = p("linux/arm64");
        assert_eq!(check_in(&arm64, &arm64, d.path()), Ok(Runner::Native));
        assert!(check_in(&amd64, &arm64, d.path()).is_err());
    }

    #[test]
    fn disabled_and_unfixed_handlers_and_no_binfmt_misc_are_told_apart() {
        let amd64 = p("linux/amd64");
        let disabled = AARCH64.replacen("enabled", "disabled", 1);
        let d = dir(&[("qemu-aarch64", &disabled)]);
        let err = check_in(&p("linux/arm64"), &amd64, d.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(": qemu-aarch64 is registered but disabled; install one:"),
            "{err}"
        );
        assert!(
            err.ends_with("update-binfmts --enable qemu-aarch64"),
            "{err}"
        );

        let unfixed = AARCH64.replace("flags: PF", "flags: P");
        let d = dir(&[("qemu-aarch64", &unfixed)]);
        let err = check_in(&p("linux/arm64"), &amd64, d.path()).unwrap_err();
        assert!(
            matches!(&err, EmulationError::NotFixBinary { handler, .. } if handler == "qemu-aarch64"),
            "{err}"
        );

        let empty = tempfile::tempdir().unwrap();
        let err = check_in(&p("linux/arm64"), &amd64, empty.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("binfmt_misc is not mounted (mount -t binfmt_misc"),
            "{err}"
        );
    }
}
