//! Table tests of the explanations: each kind of changed input gives its message.

use super::*;

fn input(name: &str, value: serde_json::Value) -> Input {
    Input {
        name: name.to_owned(),
        value,
        label: None,
    }
}

fn files(source: &str, sum: &str) -> Input {
    Input {
        name: "source".to_owned(),
        value: sum.into(),
        label: Some(Label::Files(source.to_owned())),
    }
}

fn step(text: &str, inputs: Vec<Input>) -> StepTrace {
    StepTrace {
        text: text.to_owned(),
        key: Digest::of(serde_json::to_string(&inputs).unwrap().as_bytes()),
        inputs,
    }
}

/// The explanation of `now` against `was`, with a parent change and a tree diff at hand.
fn why(was: Option<&StepTrace>, text: &str, now: &[Input]) -> String {
    let parent = Change::Step {
        keyword: "COPY".into(),
        at: "Dockerfile:4".into(),
        ran: true,
    };
    let stage = |label: &Label| match label {
        Label::Stage(name) => Some(Why::Stage {
            stage: name.clone(),
            change: Some(Change::Step {
                keyword: "RUN".into(),
                at: "Dockerfile:7".into(),
                ran: true,
            }),
        }),
        _ => None,
    };
    let trees = |was: &str, now: &str| {
        diff_listings(
            format!("src/a\0{was}").as_bytes(),
            format!("src/a\0{now}\nsrc/b\0100000\0644\0sha256:00\n").as_bytes(),
        )
        .ok()
    };
    explain(was, text, now, Some(&parent), &stage, &trees).to_string()
}

#[test]
fn each_changed_input_has_its_message() {
    let base = || {
        vec![
            input("version", "kiln build cache 2".into()),
            input("parent", "sha256:1".into()),
            input("command", "make".into()),
            input(
                "env",
                serde_json::json!([["PATH", "/bin"], ["VERSION", "1.0"]]),
            ),
            input("declared", serde_json::json!([["VERSION", "1.0"]])),
            input("cwd", "/src".into()),
        ]
    };
    let last = step("RUN make", base());
    let with = |name: &str, value: serde_json::Value| {
        let mut inputs = base();
        inputs.iter_mut().find(|i| i.name == name).unwrap().value = value;
        inputs
    };
    let cases: Vec<(Vec<Input>, &str, &str)> = vec![
        (base(), "RUN make", "cache record pruned"),
        (
            with("parent", "sha256:2".into()),
            "RUN make",
            "parent changed (COPY at Dockerfile:4 re-ran)",
        ),
        (
            {
                let mut i = with("declared", serde_json::json!([["VERSION", "1.1"]]));
                i[3].value = serde_json::json!([["PATH", "/bin"], ["VERSION", "1.1"]]);
                i
            },
            "RUN make",
            r#"build-arg VERSION changed ("1.0" → "1.1")"#,
        ),
        (
            with("declared", serde_json::json!([])),
            "RUN make",
            r#"build-arg VERSION changed ("1.0" → unset)"#,
        ),
        (
            with(
                "env",
                serde_json::json!([["PATH", "/usr/bin"], ["VERSION", "1.0"]]),
            ),
            "RUN make",
            r#"ENV PATH changed ("/bin" → "/usr/bin")"#,
        ),
        (
            with("command", "make all".into()),
            "RUN make all",
            "instruction changed (was `RUN make`)",
        ),
        (
            with("command", "make all".into()),
            "RUN make",
            r#"the expanded command changed ("make" → "make all")"#,
        ),
        (
            with("cwd", "/app".into()),
            "RUN make",
            r#"the working directory changed ("/src" → "/app")"#,
        ),
    ];
    for (now, text, want) in cases {
        assert_eq!(why(Some(&last), text, &now), want, "{now:?}");
    }
    assert_eq!(
        why(None, "RUN make", &base()),
        "no earlier build of this step"
    );
}

#[test]
fn changed_files_and_stages_are_named() {
    let last = step(
        "COPY src/ /app",
        vec![
            input("parent", "p".into()),
            files("src/", "100000\x00644\x00sha256:aa"),
        ],
    );
    let now = vec![
        input("parent", "p".into()),
        files("src/", "100000\x00644\x00sha256:bb"),
    ];
    assert_eq!(
        why(Some(&last), "COPY src/ /app", &now),
        "src/a changed (content sha256:aa → sha256:bb), 1 file added"
    );
    let now = vec![
        input("parent", "p".into()),
        files("src/", "100000\x00755\x00sha256:aa"),
    ];
    assert_eq!(
        why(Some(&last), "COPY src/ /app", &now),
        "src/a changed (mode 644 → 755), 1 file added"
    );
    let from = |key: &str| Input {
        name: "from".to_owned(),
        value: key.into(),
        label: Some(Label::Stage("build".to_owned())),
    };
    let last = step(
        "COPY --from=build /out /",
        vec![input("parent", "p".into()), from("k1")],
    );
    let now = vec![input("parent", "p".into()), from("k2")];
    assert_eq!(
        why(Some(&last), "COPY --from=build /out /", &now),
        "stage build changed (RUN at Dockerfile:7 re-ran)"
    );
}

#[test]
fn listings_diff_by_path() {
    let was =
        "a\x00100000\x00644\x00sha256:1\nb\x00100000\x00644\x00sha256:2\nc\x0040000\x00755\x00\n";
    let now = "a\x00100000\x00644\x00sha256:1\nb\x00100000\x00644\x00sha256:3\nd\x00100000\x00644\x00sha256:4\n";
    let diff = diff_listings(was.as_bytes(), now.as_bytes()).unwrap();
    assert_eq!((diff.changed, diff.added, diff.removed), (1, 1, 1));
    assert_eq!(
        diff.to_string(),
        "b changed (content sha256:2 → sha256:3), 1 file added, 1 file removed"
    );
    let none = diff_listings(was.as_bytes(), was.as_bytes()).unwrap();
    assert_eq!(none, FilesDiff::default());
}

#[test]
fn a_step_matches_the_last_build_by_instruction() {
    let mut trace = BuildTrace::default();
    let steps = trace.stages.entry("s".to_owned()).or_default();
    steps.insert(1, step("COPY . /", vec![]));
    steps.insert(2, step("RUN make", vec![]));
    // A line added above: `RUN make` is now step 3 and still matches.
    let texts = ["COPY . /", "RUN echo", "RUN make"];
    assert_eq!(
        trace.matching("s", 3, "RUN make", &texts).unwrap().text,
        "RUN make"
    );
    assert!(trace.matching("s", 2, "RUN echo", &texts).is_none());
    // An edited line matches the step at its place.
    let texts = ["COPY . /", "RUN make all"];
    assert_eq!(
        trace.matching("s", 2, "RUN make all", &texts).unwrap().text,
        "RUN make"
    );
}

#[test]
fn traces_are_kept_until_replaced_and_listings_while_named() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let traces = Traces::open(&store);
    let listing = b"a\x00100000\x00644\x00sha256:1\n";
    let sum = Digest::of(listing);
    traces.keep_tree(&sum, |w| w.write_all(listing)).unwrap();
    let mut trace = BuildTrace::default();
    trace
        .stages
        .entry("s".to_owned())
        .or_default()
        .insert(1, step("COPY a /", vec![files("a", &sum.to_string())]));
    traces.save("one", &trace, None).unwrap();
    assert_eq!(traces.load("one"), Some(trace.clone()));
    assert!(traces.tree_path(&sum).exists());
    // Replaced by a trace that names no listing: the listing goes.
    traces
        .save("one", &BuildTrace::default(), Some(&trace))
        .unwrap();
    assert!(!traces.tree_path(&sum).exists());
}
