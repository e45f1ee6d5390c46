//! Instruction tests: BuildKit's `instructions/vectors.json` and our own table.

use super::*;
use crate::dockerfile::parse;
use crate::testutil::{conformance_dir, read};
use serde_json::Value;

fn first(source: &str) -> Result<Instruction, InstructionError> {
    let file = parse(source).map_err(|e| InstructionError::new(e.message))?;
    Instruction::from_node(&file.instructions[0])
}

fn vectors() -> Option<Value> {
    let dir = conformance_dir()?;
    Some(serde_json::from_slice(&read(&dir, "buildkit-instructions/vectors.json")).unwrap())
}

#[test]
fn buildkit_error_vectors() {
    let Some(v) = vectors() else { return };
    let cases = v["errors"].as_array().unwrap();
    for case in cases {
        let message = first(case["dockerfile"].as_str().unwrap())
            .expect_err(&case.to_string())
            .message;
        if let Some(want) = case["error_equals"].as_str() {
            assert_eq!(message, want, "{case}");
        } else {
            let want = case["error_contains"].as_str().unwrap();
            assert!(
                message.contains(want),
                "{message:?} does not contain {want:?}"
            );
        }
    }
    assert_eq!(cases.len(), 19);
}

#[test]
fn buildkit_copy_heredoc_vectors() {
    let Some(v) = vectors() else { return };
    let cases = v["copy_heredoc"].as_array().unwrap();
    for case in cases {
        let Instruction::Copy(copy) = first(case["dockerfile"].as_str().unwrap()).unwrap() else {
            panic!("not a COPY: {case}");
        };
        assert_eq!(copy.files.dest, case["dest_path"].as_str().unwrap());
        let sources: Vec<String> = serde_json::from_value(case["source_paths"].clone()).unwrap();
        assert_eq!(copy.files.sources, sources, "{case}");
        let inline: Vec<Value> = copy
            .files
            .inline
            .iter()
            .map(|s| serde_json::json!({"path": s.name, "data": s.data, "expand": s.expand}))
            .collect();
        assert_eq!(Value::from(inline), case["source_contents"], "{case}");
    }
    assert_eq!(cases.len(), 8);
}

#[test]
fn buildkit_run_heredoc_vectors() {
    let Some(v) = vectors() else { return };
    let cases = v["run_heredoc"].as_array().unwrap();
    for case in cases {
        let Instruction::Run(run) = first(case["dockerfile"].as_str().unwrap()).unwrap() else {
            panic!("not a RUN: {case}");
        };
        assert_eq!(
            run.command.prepend_shell,
            case["prepend_shell"].as_bool().unwrap(),
            "{case}"
        );
        let cmd: Vec<String> = serde_json::from_value(case["cmd_line"].clone()).unwrap();
        assert_eq!(run.command.args, cmd, "{case}");
        let files: Vec<Value> = run
            .command
            .files
            .iter()
            .map(|f| serde_json::json!({"name": f.name, "data": f.content, "chomp": f.chomp}))
            .collect();
        assert_eq!(Value::from(files), case["files"], "{case}");
    }
    assert_eq!(cases.len(), 6);
}

#[test]
fn our_errors() {
    let cases = [
        ("RUNN echo", "unknown instruction: RUNN (did you mean RUN?)"),
        (
            "COPY --form=a b c",
            "unknown flag: --form (did you mean --from?)",
        ),
        ("ADD --from=a b c", "unknown flag: --from"),
        (
            "RUN --device=x true",
            "RUN --device is not supported by kiln yet",
        ),
        (
            "RUN --security=insecure true",
            "RUN --security=insecure is not supported by kiln (it needs a privileged sandbox)",
        ),
        (
            "RUN --network=bridge true",
            "unsupported network mode \"bridge\"",
        ),
        ("RUN", "RUN requires at least one argument"),
        ("FROM a b", "FROM requires either one or three arguments"),
        (
            "FROM a AS 1x",
            "invalid name for build stage: \"1x\", name can't start with a number or contain symbols",
        ),
        (
            "SHELL /bin/bash -c",
            "SHELL requires the arguments to be in JSON form",
        ),
        (
            "HEALTHCHECK --interval=abc CMD true",
            "time: invalid duration \"abc\"",
        ),
        (
            "HEALTHCHECK --interval=10us CMD true",
            "Interval \"interval\" cannot be less than 1ms",
        ),
        (
            "HEALTHCHECK --retries=-1 CMD true",
            "--retries cannot be negative (-1)",
        ),
        ("HEALTHCHECK NONE x", "HEALTHCHECK NONE takes no arguments"),
        ("HEALTHCHECK --interval=1s NONE", "unknown flag: --interval"),
        (
            "HEALTHCHECK CONNECT TCP 7000",
            "Unknown type \"CONNECT\" in HEALTHCHECK (try CMD)",
        ),
        ("HEALTHCHECK CMD", "Missing command after HEALTHCHECK CMD"),
        (
            "ONBUILD MAINTAINER me",
            "MAINTAINER isn't allowed as an ONBUILD trigger",
        ),
        ("USER", "USER requires exactly one argument"),
        (
            "VOLUME [\"\"]",
            "VOLUME specified can not be an empty string",
        ),
        ("ARG =x", "ARG names can not be blank"),
        ("ENV =x", "ENV names can not be blank"),
    ];
    for (source, want) in cases {
        assert_eq!(
            first(source).err().map(|e| e.message).as_deref(),
            Some(want),
            "{source}"
        );
    }
    // USER takes the rest of the line as one value, like BuildKit's parseString.
    assert_eq!(first("USER a b"), Ok(Instruction::User("a b".into())));
}

#[test]
fn shapes() {
    assert_eq!(
        first("FROM --platform=$P Golang:1 AS Build").unwrap(),
        Instruction::From(From {
            image: "Golang:1".into(),
            stage_name: Some("build".into()),
            platform: Some("$P".into())
        })
    );
    let Instruction::Healthcheck(Healthcheck::Check {
        test,
        interval,
        retries,
        ..
    }) = first("HEALTHCHECK --interval=1m30s --retries=3 CMD curl -f x").unwrap()
    else {
        panic!()
    };
    assert_eq!(test, ["CMD-SHELL", "curl -f x"]);
    assert_eq!((interval, retries), (90_000_000_000, 3));
    let Instruction::Run(run) =
        first("RUN --mount=type=cache,target=/c --network=none make").unwrap()
    else {
        panic!()
    };
    assert_eq!(run.mounts, ["type=cache,target=/c"]);
    assert_eq!(run.network, Network::None);
    assert_eq!(run.command.args, ["make"]);
    assert_eq!(
        first("CMD [\"a\", \"b\"]").unwrap(),
        Instruction::Cmd(Command {
            args: vec!["a".into(), "b".into()],
            prepend_shell: false,
            files: vec![]
        })
    );
    let Instruction::Add(add) = first("ADD --unpack=false --link a.tgz /x/").unwrap() else {
        panic!()
    };
    assert_eq!((add.unpack, add.flags.link), (Some(false), true));
    assert_eq!(
        first("ONBUILD RUN echo hi").unwrap(),
        Instruction::OnBuild("RUN echo hi".into())
    );
    let Instruction::Arg(args) = first("ARG a b=\"c d\"").unwrap() else {
        panic!()
    };
    assert_eq!(
        args[1],
        ArgDecl {
            name: "b".into(),
            default: Some("\"c d\"".into())
        }
    );
}

#[test]
fn go_durations() {
    let cases = [
        ("0", Some(0)),
        ("1s", Some(1_000_000_000)),
        ("1.5h", Some(5_400_000_000_000)),
        ("1m30s", Some(90_000_000_000)),
        ("300ms", Some(300_000_000)),
        ("-2us", Some(-2_000)),
        ("10", None),
        ("", None),
        ("1d", None),
    ];
    for (input, want) in cases {
        assert_eq!(parse_go_duration(input), want, "{input}");
    }
}

struct Upper;

impl Expander for Upper {
    fn word(&mut self, word: &str) -> Result<String, InstructionError> {
        Ok(word.replace("$X", "x1"))
    }
    fn words(&mut self, word: &str) -> Result<Vec<String>, InstructionError> {
        Ok(self.word(word)?.split(' ').map(str::to_owned).collect())
    }
    fn raw(&mut self, text: &str) -> Result<String, InstructionError> {
        Ok(text.replace("$X", "raw"))
    }
}

#[test]
fn expansion_touches_only_expanding_fields() {
    let mut copy = first("COPY --from=$X --chown=$X $X /d/$X").unwrap();
    copy.expand(&mut Upper).unwrap();
    let Instruction::Copy(c) = copy else { panic!() };
    assert_eq!(
        (c.from.as_deref(), c.flags.chown.as_deref()),
        (Some("x1"), Some("x1"))
    );
    assert_eq!(
        (c.files.sources.as_slice(), c.files.dest.as_str()),
        (&["x1".to_owned()][..], "/d/x1")
    );
    let mut run = first("RUN --mount=type=bind,target=/$X,from=$X echo $X").unwrap();
    run.expand(&mut Upper).unwrap();
    let Instruction::Run(r) = run else { panic!() };
    assert_eq!(r.mounts, ["type=bind,target=/x1,from=$X"]);
    assert_eq!(r.command.args, ["echo $X"]);
    let mut expose = first("EXPOSE $X").unwrap();
    expose.expand(&mut Upper).unwrap();
    assert_eq!(expose, Instruction::Expose(vec!["x1".into()]));
}
