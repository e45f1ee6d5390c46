//! The differential cases: kiln's own (one per instruction family, under `own/`) and every
//! kaniko integration Dockerfile, each either included (copied under `kaniko/`, which stands
//! for kaniko's `integration/` build context, with its origin and any edit noted in its first
//! lines) or excluded with the reason.
//!
//! Each included case lists the differences expected between kiln and buildah 1.28:
//! `Differs` where BuildKit's rules (which kiln follows) and buildah's differ, with a one-line
//! reason. Patterns name differences as [`super::image::Difference::what`] spells them, `*`
//! matching anything.

/// An expected difference between kiln's image and buildah's.
#[derive(Debug, Clone, Copy)]
pub enum Expect {
    /// BuildKit (kiln) and buildah disagree by design: (pattern, reason).
    Differs(&'static str, &'static str),
}

pub use Expect::Differs;

/// One Dockerfile built by both tools.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    /// The name in the results table.
    pub name: &'static str,
    /// The build context, relative to `tests/differential/`.
    pub context: &'static str,
    /// The Dockerfile, relative to the context.
    pub dockerfile: &'static str,
    /// A Dockerfile for buildah instead, for syntax buildah 1.28 lacks (relative to the context).
    pub buildah_dockerfile: Option<&'static str>,
    /// `--build-arg` values.
    pub build_args: &'static [&'static str],
    /// Environment for both builders (build args given without a value read it).
    pub env: &'static [(&'static str, &'static str)],
    /// `--target`.
    pub target: Option<&'static str>,
    /// A parent image built first: (Dockerfile relative to the context, tag the case uses).
    pub parent: Option<(&'static str, &'static str)>,
    /// Both builds must fail (then nothing is compared).
    pub both_fail: bool,
    /// The differences expected.
    pub expect: &'static [Expect],
}

const CASE: Case = Case {
    name: "",
    context: "",
    dockerfile: "Dockerfile",
    buildah_dockerfile: None,
    build_args: &[],
    env: &[],
    target: None,
    parent: None,
    both_fail: false,
    expect: &[],
};

/// A kaniko Dockerfile built with `kaniko/` as its context, as upstream does.
const fn kaniko(file: &'static str) -> Case {
    Case {
        name: file,
        context: "kaniko",
        dockerfile: file,
        ..CASE
    }
}

/// A case of kiln's own, `own/<name>/Dockerfile`.
const fn own(name: &'static str, context: &'static str) -> Case {
    Case {
        name,
        context,
        ..CASE
    }
}

/// buildah 1.28 globs again the name a wildcard matched: `arr[0].txt` then matches nothing.
const BUILDAH_REGLOB: Expect = Differs(
    "build",
    "buildah 1.28 re-globs the context file `arr[0].txt` a wildcard matched and fails; BuildKit copies it",
);

/// BuildKit's VOLUME only records the path; buildah (like the classic builder) creates it.
const VOLUME_DIRS: &str =
    "BuildKit's VOLUME only records the path; buildah 1.28 also creates the directory";

/// kiln's own cases: every instruction, and the rules people trip over.
pub const OWN: &[Case] = &[
    Case {
        build_args: &["QUX=from-cli"],
        expect: &[
            Differs(
                "config.Env.BAR",
                "BuildKit: an ARG declared after an ENV of the same name wins for what follows; buildah prefers the ENV",
            ),
            Differs(
                "/foo-seen-by-run content",
                "the same ARG-after-ENV rule, as RUN sees it",
            ),
        ],
        ..own("own/env_arg", "own/env_arg")
    },
    own("own/copy_dirs", "own/copy_dirs"),
    own("own/chown_chmod", "own/chown_chmod"),
    Case {
        expect: &[Differs(
            "/chowned/top* owner",
            "BuildKit applies ADD --chown to what an archive extracts to; buildah 1.28 keeps the archive's owners",
        )],
        ..own("own/add_extract", "own/add_extract")
    },
    Case {
        expect: &[Differs(
            "config.WorkingDir",
            "BuildKit stores WORKDIR cleaned (`/w1/../w4/.` is `/w4`); buildah as written",
        )],
        ..own("own/workdir_user", "own/workdir_user")
    },
    Case {
        expect: &[
            Differs(
                "config.ExposedPorts",
                "BuildKit expands a port range (9000-9002) into its ports; buildah 1.28 keeps the range as one key",
            ),
            Differs("/data presence", VOLUME_DIRS),
            Differs("/logs presence", VOLUME_DIRS),
            Differs("/cache presence", VOLUME_DIRS),
        ],
        ..own("own/metadata", "own/metadata")
    },
    Case {
        parent: Some(("parent.Dockerfile", "diff-own-onbuild-parent")),
        ..own("own/onbuild", "own/onbuild")
    },
    own("own/multistage", "own/multistage"),
    own("own/user_groups", "own/user_groups"),
    Case {
        buildah_dockerfile: Some("heredoc.buildah.Dockerfile"),
        ..own("own/heredoc", "own/heredoc")
    },
    own("own/dockerignore", "own/dockerignore"),
    own("own/whiteouts", "own/whiteouts"),
    own("own/links", "own/links"),
    own("own/scratch", "own/scratch"),
    own("own/path_env", "own/path_env"),
    own("own/no_path", "own/no_path"),
];

/// Whether a kaniko Dockerfile is in the suite.
#[derive(Debug, Clone, Copy)]
pub enum Kaniko {
    /// Built by both and compared.
    Included(Case),
    /// Left out, with the reason.
    Excluded(&'static str),
}

use Kaniko::{Excluded, Included};

const NETWORK: &str = "network: ADD of an https:// URL";
const APT: &str = "needs a package manager and the network (apt/yum/apk/npm)";

/// Every kaniko Dockerfile (the 90 of `integration/dockerfiles/`, the 6 of
/// `dockerfiles-with-context/` and the 2 of `testdata/`), by its path in kaniko's
/// `integration/` folder.
pub const KANIKO: &[(&str, Kaniko)] = &[
    ("1097", Included(kaniko("1097"))),
    (
        "Dockerfile_dockerignore_relative",
        Included(kaniko("Dockerfile_dockerignore_relative")),
    ),
    (
        "Dockerfile_git_buildcontext",
        Excluded("needs a git build context (the kaniko repository's LICENSE)"),
    ),
    (
        "Dockerfile_hardlink_base",
        Excluded("apk add git: a package manager and the network"),
    ),
    (
        "Dockerfile_onbuild_base",
        Included(kaniko("Dockerfile_onbuild_base")),
    ),
    (
        "Dockerfile_registry_mirror",
        Included(kaniko("Dockerfile_registry_mirror")),
    ),
    (
        "Dockerfile_relative_copy",
        Included(Case {
            name: "Dockerfile_relative_copy",
            context: "kaniko/context",
            dockerfile: "../Dockerfile_relative_copy",
            ..CASE
        }),
    ),
    (
        "Dockerfile_test_add",
        Included(Case {
            build_args: &["file=context/foo"],
            expect: &[BUILDAH_REGLOB],
            ..kaniko("Dockerfile_test_add")
        }),
    ),
    ("Dockerfile_test_add_404", Excluded(NETWORK)),
    (
        "Dockerfile_test_add_chown_intermediate_dirs",
        Included(kaniko("Dockerfile_test_add_chown_intermediate_dirs")),
    ),
    (
        "Dockerfile_test_add_dest_symlink_dir",
        Excluded("tests phusion/baseimage's /etc/service symlink: unavailable base"),
    ),
    ("Dockerfile_test_add_url_with_arg", Excluded(NETWORK)),
    (
        "Dockerfile_test_arg_blank_with_quotes",
        Included(kaniko("Dockerfile_test_arg_blank_with_quotes")),
    ),
    (
        "Dockerfile_test_arg_from_quotes",
        Included(kaniko("Dockerfile_test_arg_from_quotes")),
    ),
    (
        "Dockerfile_test_arg_from_single_quotes",
        Included(kaniko("Dockerfile_test_arg_from_single_quotes")),
    ),
    (
        "Dockerfile_test_arg_multi",
        Included(kaniko("Dockerfile_test_arg_multi")),
    ),
    (
        "Dockerfile_test_arg_multi_empty_val",
        Included(kaniko("Dockerfile_test_arg_multi_empty_val")),
    ),
    (
        "Dockerfile_test_arg_multi_with_quotes",
        Included(kaniko("Dockerfile_test_arg_multi_with_quotes")),
    ),
    (
        "Dockerfile_test_arg_secret",
        Included(Case {
            build_args: &["SSH_PRIVATE_KEY", "SSH_PUBLIC_KEY=Pµbl1cK€Y"],
            env: &[("SSH_PRIVATE_KEY", "ThEPriv4t3Key")],
            ..kaniko("Dockerfile_test_arg_secret")
        }),
    ),
    (
        "Dockerfile_test_arg_two_level",
        Included(kaniko("Dockerfile_test_arg_two_level")),
    ),
    (
        "Dockerfile_test_cache",
        Excluded("RUN date: the content differs on every build (a cache test)"),
    ),
    (
        "Dockerfile_test_cache_copy",
        Included(kaniko("Dockerfile_test_cache_copy")),
    ),
    (
        "Dockerfile_test_cache_copy_oci",
        Included(kaniko("Dockerfile_test_cache_copy_oci")),
    ),
    ("Dockerfile_test_cache_install", Excluded(APT)),
    ("Dockerfile_test_cache_install_oci", Excluded(APT)),
    (
        "Dockerfile_test_cache_oci",
        Excluded("RUN date: the content differs on every build (a cache test)"),
    ),
    (
        "Dockerfile_test_cache_perm",
        Included(kaniko("Dockerfile_test_cache_perm")),
    ),
    (
        "Dockerfile_test_cache_perm_oci",
        Included(kaniko("Dockerfile_test_cache_perm_oci")),
    ),
    (
        "Dockerfile_test_cmd",
        Included(Case {
            expect: &[Differs(
                "config.Entrypoint",
                "BuildKit: `[\"myentrypoint\"] # comment` is not valid JSON, so shell form; buildah 1.28 takes the array and drops the rest",
            )],
            ..kaniko("Dockerfile_test_cmd")
        }),
    ),
    (
        "Dockerfile_test_complex_substitution",
        Included(kaniko("Dockerfile_test_complex_substitution")),
    ),
    (
        "Dockerfile_test_copy",
        Included(Case {
            expect: &[BUILDAH_REGLOB],
            ..kaniko("Dockerfile_test_copy")
        }),
    ),
    (
        "Dockerfile_test_copy_bucket",
        Included(Case {
            expect: &[BUILDAH_REGLOB],
            ..kaniko("Dockerfile_test_copy_bucket")
        }),
    ),
    (
        "Dockerfile_test_copy_chown_intermediate_dirs",
        Included(kaniko("Dockerfile_test_copy_chown_intermediate_dirs")),
    ),
    (
        "Dockerfile_test_copy_chown_nonexisting_user",
        Included(kaniko("Dockerfile_test_copy_chown_nonexisting_user")),
    ),
    (
        "Dockerfile_test_copy_reproducible",
        Included(Case {
            expect: &[BUILDAH_REGLOB],
            ..kaniko("Dockerfile_test_copy_reproducible")
        }),
    ),
    (
        "Dockerfile_test_copy_root_multistage",
        Included(kaniko("Dockerfile_test_copy_root_multistage")),
    ),
    (
        "Dockerfile_test_copy_same_file_many_times",
        Included(kaniko("Dockerfile_test_copy_same_file_many_times")),
    ),
    (
        "Dockerfile_test_copy_symlink",
        Included(kaniko("Dockerfile_test_copy_symlink")),
    ),
    (
        "Dockerfile_test_copyadd_chmod",
        Included(kaniko("Dockerfile_test_copyadd_chmod")),
    ),
    (
        "Dockerfile_test_daemons",
        Excluded(
            "leaves a process looping forever; buildah's chroot isolation has no PID namespace to end it",
        ),
    ),
    (
        "Dockerfile_test_dangling_symlink",
        Included(kaniko("Dockerfile_test_dangling_symlink")),
    ),
    (
        "Dockerfile_test_deleted_file_cached",
        Included(kaniko("Dockerfile_test_deleted_file_cached")),
    ),
    (
        "Dockerfile_test_dockerignore",
        Included(kaniko("Dockerfile_test_dockerignore")),
    ),
    (
        "Dockerfile_test_env",
        Included(Case {
            expect: &[Differs(
                "config.Env order",
                "BuildKit sets a redefined variable in place (PATH keeps the base's position); buildah 1.28 moves it to the end",
            )],
            ..kaniko("Dockerfile_test_env")
        }),
    ),
    (
        "Dockerfile_test_expose",
        Included(Case {
            expect: &[Differs(
                "config.ExposedPorts",
                "buildah 1.28 loses `EXPOSE $port/$protocol` (83/tcp) after `EXPOSE $port/udp`; BuildKit keeps both",
            )],
            ..kaniko("Dockerfile_test_expose")
        }),
    ),
    (
        "Dockerfile_test_extract_fs",
        Included(kaniko("Dockerfile_test_extract_fs")),
    ),
    (
        "Dockerfile_test_extraction",
        Excluded("private base gcr.io/kaniko-test/extraction-base-image: unavailable base"),
    ),
    (
        "Dockerfile_test_from_multistage_capital",
        Included(kaniko("Dockerfile_test_from_multistage_capital")),
    ),
    (
        "Dockerfile_test_hardlink",
        Excluded("composer, php, jboss and a private hardlink base: unavailable bases"),
    ),
    (
        "Dockerfile_test_ignore",
        Included(kaniko("Dockerfile_test_ignore")),
    ),
    ("Dockerfile_test_issue_1039", Excluded(APT)),
    ("Dockerfile_test_issue_1837", Excluded(APT)),
    ("Dockerfile_test_issue_2049", Excluded(APT)),
    ("Dockerfile_test_issue_2066", Excluded(APT)),
    (
        "Dockerfile_test_issue_519",
        Included(kaniko("Dockerfile_test_issue_519")),
    ),
    (
        "Dockerfile_test_issue_647",
        Included(kaniko("Dockerfile_test_issue_647")),
    ),
    ("Dockerfile_test_issue_684", Excluded(APT)),
    (
        "Dockerfile_test_issue_704",
        Included(kaniko("Dockerfile_test_issue_704")),
    ),
    (
        "Dockerfile_test_label",
        Included(kaniko("Dockerfile_test_label")),
    ),
    (
        "Dockerfile_test_maintainer",
        Included(kaniko("Dockerfile_test_maintainer")),
    ),
    (
        "Dockerfile_test_meta_arg",
        Included(kaniko("Dockerfile_test_meta_arg")),
    ),
    (
        "Dockerfile_test_metadata",
        Included(kaniko("Dockerfile_test_metadata")),
    ),
    (
        "Dockerfile_test_multistage",
        Included(Case {
            build_args: &["file=/foo2"],
            expect: &[Differs("/date content", "RUN date: the time of each build")],
            ..kaniko("Dockerfile_test_multistage")
        }),
    ),
    (
        "Dockerfile_test_multistage_args_issue_1911",
        Included(Case {
            expect: &[Differs(
                "/*.txt content",
                "BuildKit: a stage's ARG values are in scope in stages built FROM it; buildah's are not",
            )],
            ..kaniko("Dockerfile_test_multistage_args_issue_1911")
        }),
    ),
    (
        "Dockerfile_test_mv_add",
        Included(kaniko("Dockerfile_test_mv_add")),
    ),
    (
        "Dockerfile_test_onbuild",
        Included(Case {
            build_args: &["file=/tmp/onbuild"],
            parent: Some(("Dockerfile_onbuild_base", "kaniko-onbuild-base")),
            ..kaniko("Dockerfile_test_onbuild")
        }),
    ),
    ("Dockerfile_test_parent_dir_perms", Excluded(NETWORK)),
    (
        "Dockerfile_test_registry",
        Included(kaniko("Dockerfile_test_registry")),
    ),
    (
        "Dockerfile_test_replaced_hardlinks",
        Excluded("tests the hard links of jboss/base-jdk: unavailable base"),
    ),
    (
        "Dockerfile_test_replaced_symlinks",
        Included(kaniko("Dockerfile_test_replaced_symlinks")),
    ),
    (
        "Dockerfile_test_run",
        Included(Case {
            build_args: &["file=/file"],
            ..kaniko("Dockerfile_test_run")
        }),
    ),
    (
        "Dockerfile_test_run_2",
        Included(kaniko("Dockerfile_test_run_2")),
    ),
    (
        "Dockerfile_test_run_new",
        Included(Case {
            build_args: &["file=/file"],
            ..kaniko("Dockerfile_test_run_new")
        }),
    ),
    (
        "Dockerfile_test_run_redo",
        Included(Case {
            build_args: &["file=/file"],
            ..kaniko("Dockerfile_test_run_redo")
        }),
    ),
    (
        "Dockerfile_test_scratch",
        Included(Case {
            build_args: &[
                "image=scratch",
                "hello=hello-value",
                "file=context/foo",
                "file3=context/b*",
            ],
            ..kaniko("Dockerfile_test_scratch")
        }),
    ),
    (
        "Dockerfile_test_snapshotter_ignorelist",
        Included(kaniko("Dockerfile_test_snapshotter_ignorelist")),
    ),
    (
        "Dockerfile_test_target",
        Included(Case {
            target: Some("second"),
            build_args: &["file=/foo2"],
            ..kaniko("Dockerfile_test_target")
        }),
    ),
    (
        "Dockerfile_test_user",
        Included(kaniko("Dockerfile_test_user")),
    ),
    (
        "Dockerfile_test_user_home",
        Included(kaniko("Dockerfile_test_user_home")),
    ),
    (
        "Dockerfile_test_user_nonexisting",
        Included(kaniko("Dockerfile_test_user_nonexisting")),
    ),
    (
        "Dockerfile_test_user_run",
        Included(kaniko("Dockerfile_test_user_run")),
    ),
    (
        "Dockerfile_test_volume",
        Included(Case {
            expect: &[
                Differs("/foo/bar presence", VOLUME_DIRS),
                Differs("/baz presence", VOLUME_DIRS),
                Differs("/qux presence", VOLUME_DIRS),
                Differs(
                    "/tmp/hey presence",
                    "BuildKit keeps what a RUN writes under a VOLUME; buildah 1.28 (like the classic builder) drops it",
                ),
            ],
            ..kaniko("Dockerfile_test_volume")
        }),
    ),
    (
        "Dockerfile_test_volume_2",
        Included(Case {
            expect: &[Differs(
                "build",
                "BuildKit's VOLUME does not create /foo1, so `RUN echo > /foo1/hello` fails; buildah 1.28 creates volume directories",
            )],
            ..kaniko("Dockerfile_test_volume_2")
        }),
    ),
    (
        "Dockerfile_test_volume_3",
        Included(kaniko("Dockerfile_test_volume_3")),
    ),
    (
        "Dockerfile_test_volume_4",
        Included(kaniko("Dockerfile_test_volume_4")),
    ),
    (
        "Dockerfile_test_whitelist",
        Included(kaniko("Dockerfile_test_whitelist")),
    ),
    (
        "Dockerfile_test_workdir",
        Included(Case {
            build_args: &["workdir=/arg/workdir"],
            ..kaniko("Dockerfile_test_workdir")
        }),
    ),
    (
        "Dockerfile_test_workdir_with_user",
        Included(kaniko("Dockerfile_test_workdir_with_user")),
    ),
    (
        "TestReplaceFolderWithFile",
        Included(kaniko("TestReplaceFolderWithFile")),
    ),
    (
        "TestReplaceFolderWithLink",
        Included(kaniko("TestReplaceFolderWithLink")),
    ),
    (
        "dockerfiles-with-context/issue-1020/Dockerfile",
        Excluded(APT),
    ),
    (
        "dockerfiles-with-context/issue-1315/Dockerfile",
        Included(Case {
            name: "dockerfiles-with-context/issue-1315",
            context: "kaniko/dockerfiles-with-context/issue-1315",
            ..CASE
        }),
    ),
    (
        "dockerfiles-with-context/issue-2075/Dockerfile",
        Included(Case {
            name: "dockerfiles-with-context/issue-2075",
            context: "kaniko/dockerfiles-with-context/issue-2075",
            ..CASE
        }),
    ),
    (
        "dockerfiles-with-context/issue-57/Dockerfile",
        Excluded(NETWORK),
    ),
    (
        "dockerfiles-with-context/issue-721/Dockerfile",
        Included(Case {
            name: "dockerfiles-with-context/issue-721",
            context: "kaniko/dockerfiles-with-context/issue-721",
            ..CASE
        }),
    ),
    (
        "dockerfiles-with-context/issue-774/Dockerfile",
        Excluded("tests phusion/baseimage's /etc/service symlink: unavailable base"),
    ),
    (
        "testdata/Dockerfile.trivial",
        Included(kaniko("testdata/Dockerfile.trivial")),
    ),
    (
        "testdata/exit-code-propagation/Dockerfile_exit_code_propagation",
        Included(Case {
            name: "testdata/exit-code-propagation",
            context: "kaniko/testdata/exit-code-propagation",
            dockerfile: "Dockerfile_exit_code_propagation",
            both_fail: true,
            ..CASE
        }),
    ),
];
