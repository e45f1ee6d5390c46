//! Plan tests: stage resolution, ordering and skipping, and ARG/ENV scoping.

use super::*;
use crate::dockerfile::instructions::KeyValue;
use crate::dockerfile::parse;

fn plan_with(
    source: &str,
    build_args: &[(&str, &str)],
    target: Option<&str>,
) -> Result<Plan, PlanError> {
    let file = parse(source).map_err(|e| plan_err(e.message, e.location))?;
    let options = PlanOptions {
        build_args: build_args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        target: target.map(str::to_owned),
        platform: Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        },
        build_platform: Platform::new("linux", "amd64", None),
        named_contexts: BTreeMap::new(),
    };
    Plan::new(&file, options)
}

fn plan(source: &str) -> Plan {
    plan_with(source, &[], None).unwrap()
}

fn image(plan: &Plan, stage: usize) -> String {
    match &plan.stages[stage].base {
        Base::Image(r) => r.to_string(),
        other => format!("{other:?}"),
    }
}

/// The ENV pairs of every ENV step of a stage after expansion.
fn envs(plan: &Plan, stage: usize, base: Vec<(String, String)>) -> Vec<(String, String)> {
    let (steps, _) = plan.expand_stage(stage, base).unwrap();
    steps
        .into_iter()
        .filter_map(|s| match s.step.instruction {
            Instruction::Env(pairs) => Some(pairs),
            _ => None,
        })
        .flatten()
        .map(|KeyValue { key, value }| (key, value))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn global_args_expand_from_lines() {
    let p = plan("ARG V=3.18\nARG IMG=alpine:$V\nFROM $IMG\nRUN true");
    assert_eq!(image(&p, 0), "docker.io/library/alpine:3.18");
    let p = plan_with("ARG V=3.18\nFROM alpine:$V", &[("V", "3.19")], None).unwrap();
    assert_eq!(image(&p, 0), "docker.io/library/alpine:3.19");
    let p = plan("FROM --platform=$BUILDPLATFORM busybox AS b\nARG TARGETARCH\nENV A=$TARGETARCH");
    assert_eq!(p.stages[0].platform.as_deref(), Some("linux/amd64"));
    assert_eq!(envs(&p, 0, vec![]), pairs(&[("A", "amd64")]));
}

#[test]
fn platform_args_and_stage_platforms() {
    let source = "FROM --platform=$BUILDPLATFORM busybox AS build\n\
                  ARG TARGETPLATFORM TARGETARCH TARGETVARIANT BUILDARCH BUILDVARIANT\n\
                  ENV T=$TARGETPLATFORM A=$TARGETARCH V=$TARGETVARIANT B=$BUILDARCH BV=$BUILDVARIANT\n\
                  FROM build AS derived\n\
                  FROM --platform=linux/s390x build AS ignored\n\
                  FROM scratch AS final\n\
                  COPY --from=build /x /x\n\
                  FROM --platform=linux/s390x scratch AS other\n";
    let file = parse(source).unwrap();
    let options = PlanOptions {
        platform: "linux/arm/v7".parse().unwrap(),
        build_platform: "linux/amd64".parse().unwrap(),
        ..PlanOptions::default()
    };
    let p = Plan::new(&file, options).unwrap();
    let meta: Vec<(&str, &str)> = p
        .meta_args
        .iter()
        .map(|m| (m.name.as_str(), m.value.as_deref().unwrap_or("-")))
        .collect();
    assert_eq!(
        meta,
        [
            ("BUILDPLATFORM", "linux/amd64"),
            ("BUILDOS", "linux"),
            ("BUILDARCH", "amd64"),
            ("BUILDVARIANT", ""),
            ("TARGETPLATFORM", "linux/arm/v7"),
            ("TARGETOS", "linux"),
            ("TARGETARCH", "arm"),
            ("TARGETVARIANT", "v7"),
        ]
    );
    assert_eq!(
        envs(&p, 0, vec![]),
        pairs(&[
            ("T", "linux/arm/v7"),
            ("A", "arm"),
            ("V", "v7"),
            ("B", "amd64"),
            ("BV", "")
        ])
    );
    let platforms: Vec<String> = (0..p.stages.len())
        .map(|i| p.stage_platform(i).to_string())
        .collect();
    // A stage FROM another has its platform, whatever its own --platform says (BuildKit).
    assert_eq!(
        platforms,
        [
            "linux/amd64",
            "linux/amd64",
            "linux/amd64",
            "linux/arm/v7",
            "linux/s390x"
        ]
    );
}

#[test]
fn global_args_are_invisible_in_stages_unless_redeclared() {
    let p = plan("ARG V=1\nFROM scratch\nENV X=$V");
    assert_eq!(envs(&p, 0, vec![]), pairs(&[("X", "")]));
    let p = plan("ARG V=1\nFROM scratch\nARG V\nENV X=$V");
    assert_eq!(envs(&p, 0, vec![]), pairs(&[("X", "1")]));
    let p = plan_with(
        "ARG V=1\nFROM scratch\nARG V\nENV X=$V",
        &[("V", "cli")],
        None,
    )
    .unwrap();
    assert_eq!(envs(&p, 0, vec![]), pairs(&[("X", "cli")]));
}

#[test]
fn env_and_arg_precedence_is_by_declaration_order() {
    let p = plan("FROM scratch\nENV A=env\nARG A=arg\nENV B=$A");
    assert_eq!(envs(&p, 0, vec![]), pairs(&[("A", "env"), ("B", "arg")]));
    let p = plan("FROM scratch\nARG A=arg\nENV A=env\nENV B=$A");
    assert_eq!(envs(&p, 0, vec![]), pairs(&[("A", "env"), ("B", "env")]));
    // Every substitution in one instruction sees the values from before it.
    let p = plan("FROM scratch\nENV abc=hello\nENV abc=bye def=$abc");
    assert_eq!(
        envs(&p, 0, vec![]),
        pairs(&[("abc", "hello"), ("abc", "bye"), ("def", "hello")])
    );
    // The base image's environment is in scope.
    let p = plan("FROM busybox\nENV P=$PATH:/x");
    assert_eq!(
        envs(&p, 0, pairs(&[("PATH", "/bin")])),
        pairs(&[("P", "/bin:/x")])
    );
}

#[test]
fn arg_names_are_expanded() {
    // kaniko's Dockerfile_test_scratch: `ARG ${src}=…` declares the ARG `$src` names, and a
    // --build-arg of that name wins over its default.
    let source =
        "FROM scratch\nENV baz=baz src=file3\nARG ${src}=context/bar/${baz}\nENV got=$file3";
    let got = |build_args: &[(&str, &str)]| {
        let p = plan_with(source, build_args, None).unwrap();
        envs(&p, 0, vec![]).last().unwrap().1.clone()
    };
    assert_eq!(got(&[]), "context/bar/baz");
    assert_eq!(got(&[("file3", "context/b*")]), "context/b*");
}

#[test]
fn stage_args_flow_to_children_built_from_them() {
    let p = plan("FROM scratch AS a\nARG X=1\nFROM a\nENV Y=$X");
    assert_eq!(p.stages[1].base, Base::Stage(0));
    let (_, scope) = p.expand_stage(0, vec![]).unwrap();
    assert_eq!(envs(&p, 1, scope.env().to_vec()), pairs(&[("Y", "1")]));
}

#[test]
fn only_needed_stages_in_dependency_order() {
    let source = "FROM busybox AS base\nRUN a\n\
                  FROM base AS test\nRUN b\n\
                  FROM busybox AS assets\nRUN c\n\
                  FROM scratch\nCOPY --from=base /a /a\nCOPY --from=2 /c /c\nCOPY --from=nginx:1 /x /x";
    let p = plan(source);
    assert_eq!(p.target, 3);
    assert_eq!(p.order, [0, 2, 3]);
    assert_eq!(p.stages[3].base, Base::Scratch);
    let sources: Vec<&Source> = p.stages[3].sources.values().flatten().collect();
    assert_eq!(sources[..2], [&Source::Stage(0), &Source::Stage(2)]);
    assert_eq!(
        sources[2],
        &Source::Image(Reference::parse("nginx:1").unwrap())
    );
    let p = plan_with(source, &[], Some("TEST")).unwrap();
    assert_eq!((p.target, p.order.clone()), (1, vec![0, 1]));
}

/// Found while fuzzing: ordering the stages recursed once per stage of a chain, and a long enough
/// Dockerfile overflowed the stack.
#[test]
fn long_stage_chains_are_ordered() {
    let n = 5_000;
    let mut source = "FROM scratch AS s0\n".to_owned();
    for i in 0..n {
        source.push_str(&format!("FROM s{i} AS s{}\n", i + 1));
    }
    let p = plan(&source);
    assert_eq!(p.order, (0..=n).collect::<Vec<_>>());
}

#[test]
fn copy_from_expands_stage_args() {
    let p =
        plan("ARG SRC=base\nFROM busybox AS base\nFROM scratch\nARG SRC\nCOPY --from=$SRC /a /a");
    assert_eq!(p.order, [0, 1]);
}

#[test]
fn errors_name_the_line() {
    let cases = [
        (
            "FROM a AS x\nFROM x AS y\nFROM y AS a\nFROM a",
            "circular dependency detected on stage: a",
            3,
        ),
        (
            "FROM busybox AS me\nCOPY --from=me /a /b",
            "circular dependency detected on stage: me",
            2,
        ),
        (
            "FROM busybox\nCOPY --from=7 /a /b",
            "invalid stage index 7: the Dockerfile has 1 stages",
            2,
        ),
        (
            "ENV A=b\nFROM busybox",
            "ENV must come after FROM: only ARG may come before the first FROM",
            1,
        ),
        ("ARG V\nFROM $V", "base name ($V) should not be blank", 2),
        (
            "FROM busybox\nRUN --mount=type=bind true",
            "mount target is required",
            2,
        ),
        (
            "FROM busybox\nRUNN x",
            "unknown instruction: RUNN (did you mean RUN?)",
            2,
        ),
    ];
    for (source, message, line) in cases {
        let err = plan_with(source, &[], None).unwrap_err();
        assert_eq!(
            (err.message.as_str(), err.location.start_line),
            (message, line),
            "{source}"
        );
    }
    // Found by fuzzing: picking the last stage of none underflowed.
    let err = plan_with("ARG A=1\nARG B=${A}", &[], None).unwrap_err();
    assert_eq!(err.message, "dockerfile contains no stages to build");
    let err = plan_with("FROM Alpine", &[], None).unwrap_err();
    assert!(err.message.contains("must be lowercase"), "{}", err.message);
    let err = plan_with("FROM busybox", &[], Some("nope")).unwrap_err();
    assert_eq!(err.message, "target stage \"nope\" could not be found");
}

#[test]
fn warnings() {
    let p = plan_with(
        "ARG USED\nFROM busybox$NOPE",
        &[
            ("USED", "1"),
            ("UNUSED", "2"),
            ("HTTP_PROXY", "p"),
            ("BUILDKIT_DOCKERFILE_CHECK", "skip=all"),
        ],
        None,
    )
    .unwrap();
    let messages: Vec<&str> = p.warnings.iter().map(|w| w.message.as_str()).collect();
    assert_eq!(messages, ["build-arg \"UNUSED\" was not consumed"]);
}

/// kaniko's integration Dockerfiles all parse, plan and expand, with the build args and targets
/// its harness passes (`test-config.json`).
#[test]
fn kaniko_dockerfiles_plan() {
    let Some(dir) = crate::testutil::conformance_dir() else {
        return;
    };
    let root = dir.join("kaniko-dockerfiles");
    let config: serde_json::Value =
        serde_json::from_slice(&crate::testutil::read(&root, "test-config.json")).unwrap();
    let run = &config["TestRun"];
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.is_file()
                && !p
                    .extension()
                    .is_some_and(|e| e == "json" || e == "dockerignore")
        })
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    for sub in ["dockerfiles-with-context"] {
        for entry in std::fs::read_dir(root.join(sub)).unwrap() {
            files.push(entry.unwrap().path().join("Dockerfile"));
        }
    }
    files.push(root.join("testdata/Dockerfile.trivial"));
    files.push(root.join("testdata/exit-code-propagation/Dockerfile_exit_code_propagation"));
    files.sort();
    let mut failures = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap().to_str().unwrap();
        let env: BTreeMap<String, String> = run["environment"][name]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| {
                e.as_str()?
                    .split_once('=')
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
            })
            .collect();
        let build_args = run["build_args"][name]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| {
                let a = a.as_str()?;
                match a.split_once('=') {
                    Some((k, v)) => Some((k.to_owned(), v.to_owned())),
                    None => env.get(a).map(|v| (a.to_owned(), v.clone())),
                }
            })
            .collect();
        let target = run["docker_only_flags"][name]
            .as_array()
            .and_then(|flags| {
                flags
                    .iter()
                    .find_map(|f| f.as_str()?.strip_prefix("--target="))
            })
            .map(str::to_owned);
        let source = std::fs::read_to_string(path).unwrap();
        let result = parse(&source)
            .map_err(|e| format!("parse: {} (line {})", e.message, e.location.start_line))
            .and_then(|file| {
                let options = PlanOptions {
                    build_args,
                    target,
                    ..PlanOptions::default()
                };
                Plan::new(&file, options)
                    .map_err(|e| format!("plan: {} (line {})", e.message, e.location.start_line))
            })
            .and_then(|plan| {
                let mut scopes = BTreeMap::new();
                for &i in &plan.order {
                    let base = match plan.stages[i].base {
                        Base::Stage(p) => scopes
                            .get(&p)
                            .map(|s: &Scope| s.env().to_vec())
                            .unwrap_or_default(),
                        _ => Vec::new(),
                    };
                    let (_, scope) = plan.expand_stage(i, base).map_err(|e| {
                        format!("expand: {} (line {})", e.message, e.location.start_line)
                    })?;
                    scopes.insert(i, scope);
                }
                Ok(())
            });
        if let Err(e) = result {
            failures.push(format!("{}: {e}", path.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(files.len(), 90 + 6 + 2);
}

#[test]
fn onbuild_triggers_become_steps() {
    let from = Location::line(3);
    let triggers = vec![
        "RUN echo hi".to_owned(),
        "COPY <<EOF /f\nbody\nEOF".to_owned(),
        "ENV A=$B".to_owned(),
    ];
    let steps = onbuild_steps(&triggers, '\\', from).unwrap();
    assert_eq!(steps.len(), 3);
    assert!(steps.iter().all(|s| s.location == from));
    let Instruction::Copy(copy) = &steps[1].instruction else {
        panic!()
    };
    assert_eq!(copy.files.inline[0].data, "body\n");
    for (bad, message) in [
        ("FROM x", "FROM isn't allowed as an ONBUILD trigger"),
        (
            "RUN a\nRUN b",
            "onbuild trigger should be a single expression",
        ),
        ("RUNN x", "unknown instruction: RUNN (did you mean RUN?)"),
    ] {
        let err = onbuild_steps(&[bad.to_owned()], '\\', from).unwrap_err();
        assert!(err.message.ends_with(message), "{}", err.message);
        assert_eq!(err.location, from);
    }
}

#[test]
fn unquoted_copy_heredocs_are_expanded_with_their_quotes_kept() {
    let plan = plan(
        "FROM scratch\nARG NAME=kiln\n\
         COPY <<EOF <<\"RAW\" /d/\nhello \"$NAME\" '${NAME}' \\$NAME\nEOF\nkeep $NAME\nRAW\n",
    );
    let (steps, _) = plan.expand_stage(0, Vec::new()).unwrap();
    let Instruction::Copy(copy) = &steps[1].step.instruction else {
        panic!("{:?}", steps[1].step.instruction)
    };
    assert_eq!(copy.files.inline[0].data, "hello \"kiln\" 'kiln' $NAME\n");
    assert_eq!(copy.files.inline[1].data, "keep $NAME\n");
}

#[test]
fn expanded_arg_steps_carry_the_names_they_declare() {
    let plan = plan("FROM scratch\nARG src=name\nARG ${src}=v other\n");
    let (steps, scope) = plan.expand_stage(0, Vec::new()).unwrap();
    let Instruction::Arg(decls) = &steps[1].step.instruction else {
        panic!("{:?}", steps[1].step.instruction)
    };
    let names: Vec<&str> = decls.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["name", "other"]);
    assert!(
        scope
            .args()
            .contains(&("name".to_owned(), Some("v".to_owned())))
    );
}

#[test]
fn named_contexts_replace_images_and_stages_by_name() {
    let file = parse(
        "FROM golang:1.22 AS builder\nRUN make\n\
         FROM Alpine:latest AS other\nRUN true\n\
         FROM alpine\nCOPY --from=builder /app /app\nCOPY --from=helper /h /h\n",
    )
    .unwrap();
    let named: BTreeMap<String, NamedContext> = [
        ("builder", "registry.example/ci/builder:7"),
        ("alpine", "registry.example/mirror/alpine:3.20"),
        ("helper", "registry.example/tools/helper:1"),
    ]
    .into_iter()
    .map(|(k, v)| {
        (
            k.to_owned(),
            NamedContext::Image(Reference::parse(v).unwrap()),
        )
    })
    .collect();
    let plan = Plan::new(
        &file,
        PlanOptions {
            named_contexts: named,
            ..PlanOptions::default()
        },
    )
    .unwrap();
    // `FROM Alpine:latest` and `FROM alpine` alike.
    for stage in [1, 2] {
        assert_eq!(image(&plan, stage), "registry.example/mirror/alpine:3.20");
    }
    let sources: Vec<&Source> = plan.stages[2].sources.values().flatten().collect();
    assert_eq!(
        sources,
        [
            &Source::Image(Reference::parse("registry.example/ci/builder:7").unwrap()),
            &Source::Image(Reference::parse("registry.example/tools/helper:1").unwrap()),
        ]
    );
    // The stage the named context replaces is not built.
    assert_eq!(plan.order, [2]);
}
