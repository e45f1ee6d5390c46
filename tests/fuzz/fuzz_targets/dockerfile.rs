//! The Dockerfile front end end to end: `parse` (directives, continuations, heredocs, JSON and
//! shell forms, flags), then every node typed with `Instruction::from_node` and expanded, then
//! the whole file planned (`Plan::new`: stages, global ARGs, `FROM <stage>`, `COPY --from`) and
//! each stage the target needs expanded, ONBUILD triggers included. Any text either fails with a
//! typed error that points inside the file or gives instructions whose locations are ordered
//! lines and byte spans inside the file; nothing panics.

#![no_main]

use std::collections::BTreeMap;

use kiln_builder::dockerfile::shell::Lexer;
use kiln_builder::dockerfile::{Instruction, Location, parse};
use kiln_builder::plan::{Plan, PlanOptions, Platform, ScopeExpander, onbuild_steps};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|source: &str| {
    let lines = source.lines().count().max(1);
    let check = |location| check_location(source, lines, location);
    let file = match parse(source) {
        Ok(file) => file,
        Err(e) => {
            check(e.location);
            return;
        }
    };
    let _ = file.dump();
    let lexer = Lexer::new(file.escape);
    let env: BTreeMap<String, String> = [("A", "a"), ("EMPTY", ""), ("SPACES", "x y")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    for node in &file.instructions {
        check(node.location);
        match Instruction::from_node(node) {
            Ok(mut instruction) => {
                assert!(node.keyword.eq_ignore_ascii_case(instruction.keyword()));
                if let Instruction::OnBuild(trigger) = &instruction {
                    let _ =
                        onbuild_steps(std::slice::from_ref(trigger), file.escape, node.location);
                }
                if let Err(e) = instruction.expand(&mut ScopeExpander::new(&lexer, &env)) {
                    check(e.location);
                }
            }
            Err(e) => check(e.location),
        }
    }

    let options = PlanOptions {
        build_args: [("A".to_owned(), "from-cli".to_owned())].into(),
        target: None,
        platform: Platform::new("linux", "amd64", None),
        ..PlanOptions::default()
    };
    let plan = match Plan::new(&file, options) {
        Ok(plan) => plan,
        Err(e) => {
            check(e.location);
            return;
        }
    };
    assert_eq!(plan.order.last(), Some(&plan.target));
    for &index in &plan.order {
        let stage = &plan.stages[index];
        assert!(stage.stage_deps().iter().all(|d| plan.order.contains(d)));
        let _ = stage.display_name();
        if let Err(e) = plan.expand_stage(index, vec![("PATH".to_owned(), "/bin".to_owned())]) {
            check(e.location);
        }
    }
});

/// A location is either unknown (all zero) or ordered lines and a span inside the source.
fn check_location(source: &str, lines: usize, location: Location) {
    let span = location.span;
    assert!(
        span.start <= span.end && span.end <= source.len(),
        "{location:?}"
    );
    assert!(location.start_line <= location.end_line, "{location:?}");
    assert!(location.end_line <= lines, "{location:?}");
}
