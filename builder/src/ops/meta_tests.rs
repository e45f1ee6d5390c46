//! Metadata op tests: config effects and history strings as BuildKit writes them.

use super::*;
use crate::dockerfile::instructions::Instruction;
use crate::dockerfile::parse;
use crate::image::ImageConfig;
use crate::plan::lower_meta;

/// Applies every instruction of a `FROM scratch` Dockerfile (ARGs recorded without values) and
/// returns the state.
fn run(dockerfile: &str) -> Result<ImageState, MetaError> {
    let file = parse(&format!("FROM scratch\n{dockerfile}")).unwrap();
    let mut state = ImageState::new(
        ImageConfig::new("amd64", "linux"),
        Some("2024-01-01T00:00:00Z".into()),
    );
    for node in &file.instructions[1..] {
        let instruction = Instruction::from_node(node).unwrap();
        if let Instruction::Arg(decls) = &instruction {
            let resolved: Vec<_> = decls
                .iter()
                .map(|d| (d.name.clone(), d.default.clone()))
                .collect();
            state.commit_arg(&resolved);
            continue;
        }
        state.apply(&lower_meta(instruction)?);
    }
    Ok(state)
}

fn history(state: &ImageState) -> Vec<(String, bool)> {
    state
        .config
        .history
        .iter()
        .map(|h| (h.created_by.clone().unwrap_or_default(), h.empty_layer))
        .collect()
}

#[test]
fn history_strings_are_buildkits() {
    let state = run("ENV a=1 b=2\nLABEL x=y\nMAINTAINER dot\nCMD echo hi\nENTRYPOINT [\"/init\"]\n\
                     USER 1001\nWORKDIR /app\nWORKDIR sub\nWORKDIR /\nEXPOSE 80 443/udp\nVOLUME /data /logs\n\
                     STOPSIGNAL SIGTERM\nSHELL [\"/bin/bash\", \"-c\"]\nARG v=1 w\n\
                     HEALTHCHECK --interval=1m30s --retries=3 CMD curl -f x\nONBUILD RUN make")
    .unwrap();
    let want: Vec<(&str, bool)> = vec![
        ("ENV a=1 b=2", true),
        ("LABEL x=y", true),
        ("MAINTAINER dot", true),
        ("CMD [\"/bin/sh\" \"-c\" \"echo hi\"]", true),
        ("ENTRYPOINT [\"/init\"]", true),
        ("USER 1001", true),
        ("WORKDIR /app", false),
        ("WORKDIR /app/sub", false),
        ("WORKDIR /", true),
        ("EXPOSE map[443/udp:{} 80/tcp:{}]", true),
        ("VOLUME [/data /logs]", true),
        ("STOPSIGNAL SIGTERM", true),
        ("SHELL [/bin/bash -c]", true),
        ("ARG v=1 w", true),
        (
            "HEALTHCHECK &{[\"CMD-SHELL\" \"curl -f x\"] \"1m30s\" \"0s\" \"0s\" \"0s\" '\\x03'}",
            true,
        ),
    ];
    let got = history(&state);
    let got: Vec<(&str, bool)> = got.iter().map(|(s, e)| (s.as_str(), *e)).collect();
    assert_eq!(got, want);
    assert!(
        state
            .config
            .history
            .iter()
            .all(|h| h.comment.as_deref() == Some(HISTORY_COMMENT))
    );
    assert!(
        state
            .config
            .history
            .iter()
            .all(|h| h.created.as_deref() == Some("2024-01-01T00:00:00Z"))
    );
}

#[test]
fn config_effects() {
    let state = run("ENV PATH=/bin A=1\nENV A=2\nLABEL a=b\nUSER app:app\nWORKDIR /srv\nWORKDIR ../opt/./x\n\
                     EXPOSE 8000-8002/tcp\nVOLUME /data\nSTOPSIGNAL 9\nONBUILD COPY . /app\nMAINTAINER me")
    .unwrap();
    let c = &state.config.config;
    assert_eq!(c.env, ["PATH=/bin", "A=2"]);
    assert_eq!(c.user, "app:app");
    assert_eq!(c.working_dir, "/opt/x");
    assert_eq!(
        c.exposed_ports.iter().collect::<Vec<_>>(),
        ["8000/tcp", "8001/tcp", "8002/tcp"]
    );
    assert_eq!(c.on_build, ["COPY . /app"]);
    assert_eq!(c.stop_signal, "9");
    assert_eq!(state.config.author.as_deref(), Some("me"));
}

#[test]
fn entrypoint_clears_inherited_cmd_but_keeps_this_stages() {
    // The base image had a CMD; an ENTRYPOINT in the child clears it.
    let mut base = ImageConfig::new("amd64", "linux");
    base.config.cmd = Some(vec!["sh".into()]);
    let mut state = ImageState::new(base, None);
    let file = parse("ENTRYPOINT [\"/e\"]").unwrap();
    state.apply(&lower_meta(Instruction::from_node(&file.instructions[0]).unwrap()).unwrap());
    assert_eq!(state.config.config.cmd, None);
    // A CMD set earlier in the same stage survives, whatever the order.
    let state = run("CMD [\"x\"]\nENTRYPOINT [\"/e\"]").unwrap();
    assert_eq!(state.config.config.cmd, Some(vec!["x".to_owned()]));
    assert!(state.config.config.args_escaped);
    // Shell form uses the SHELL set before it.
    let state = run("SHELL [\"/bin/bash\", \"-eu\", \"-c\"]\nCMD echo $HOME").unwrap();
    assert_eq!(
        state.config.config.cmd,
        Some(vec![
            "/bin/bash".into(),
            "-eu".into(),
            "-c".into(),
            "echo $HOME".into()
        ])
    );
}

#[test]
fn healthcheck_none_and_values() {
    let state = run("HEALTHCHECK NONE").unwrap();
    assert_eq!(
        state.config.config.healthcheck.as_ref().unwrap().test,
        ["NONE"]
    );
    let state = run("HEALTHCHECK --timeout=3s --start-period=1ms CMD [\"true\"]").unwrap();
    let h = state.config.config.healthcheck.as_ref().unwrap();
    assert_eq!(
        (h.test.clone(), h.timeout, h.start_period),
        (vec!["CMD".into(), "true".into()], 3_000_000_000, 1_000_000)
    );
}

#[test]
fn invalid_values() {
    let cases = [
        ("EXPOSE 99999", MetaError::InvalidPort("99999".into())),
        ("EXPOSE 80/icmp", MetaError::InvalidProto("icmp".into())),
        ("EXPOSE 90-80", MetaError::InvalidPort("90-80".into())),
        (
            "STOPSIGNAL SIGFOO",
            MetaError::InvalidSignal("SIGFOO".into()),
        ),
        ("STOPSIGNAL 0", MetaError::InvalidSignal("0".into())),
        ("RUN true", MetaError::NotMetadata("RUN")),
    ];
    for (dockerfile, want) in cases {
        assert_eq!(run(dockerfile).err(), Some(want), "{dockerfile}");
    }
}

#[test]
fn signals() {
    for ok in [
        "SIGKILL",
        "kill",
        "TERM",
        "SIGRTMIN+3",
        "RTMAX-14",
        "15",
        "SIGWINCH",
    ] {
        assert_eq!(parse_signal(ok), Ok(()), "{ok}");
    }
    for bad in ["SIGRTMIN+16", "RTMAX-15", "SIGNOPE", "", "-0"] {
        assert!(parse_signal(bad).is_err(), "{bad}");
    }
}

#[test]
fn go_durations() {
    let cases = [
        (0, "0s"),
        (999, "999ns"),
        (1_500, "1.5µs"),
        (300_000_000, "300ms"),
        (1_500_000_000, "1.5s"),
        (90_000_000_000, "1m30s"),
        (3_600_000_000_000, "1h0m0s"),
        (-2_000_000_000, "-2s"),
    ];
    for (n, want) in cases {
        assert_eq!(go_duration(n), want, "{n}");
    }
}
